"""The Data API (seed 000): one sub-package per resource.

`documents/` is document CRUD over a logical database's collections
(`spec/crud.md`); `datasets/` holds datasets, their tags, shares and items
(`spec/datasets.md`). Each sub-package has its own router / service / repository
/ schemas / errors; what two of them share lives in `app/`.
"""
