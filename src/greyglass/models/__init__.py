"""Models: load one, name its sites, and hook them.

Loading is in `loader.py` (`load_model`), the loaded model in `lm.py` (`LoadedModel`), site
names in `sites.py`, hooks in `hooks.py`, generation in `generate.py`, tiny random models for
tests in `tiny.py`. Nothing is re-exported here, so importing a torch-free module of the
package (`sites.py`) does not import torch.
"""
