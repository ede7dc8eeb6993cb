module foldcheck

go 1.22
