"""Table storage: one table, one module per aggregate; the row-key scheme lives in `keys.py`."""
