"""Not imported as ``shipctl._compat``: this directory is put on ``sys.path`` when a python plugin is loaded
(and no real ``yahoo_panoptes`` is installed), so that Panoptes plugins' ``yahoo_panoptes.*`` imports resolve
to the small package here, which maps them onto shipctl's plugin API (see shipctl/pyplugins/loader.py).
"""
