"""Model families, one Hub-portable folder each (transformers' layout: configuration_x.py, modeling_x.py)."""
