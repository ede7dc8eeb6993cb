# Generated from quarry_client/_async by client/scripts/unasync.py. Do not edit.
