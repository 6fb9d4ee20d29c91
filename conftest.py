"""Doctest collection over src: the TensorFlow and Keras modules import their framework at import
time, so they are collected only where it is installed (CI installs both with the `test` extra)."""

from importlib.util import find_spec

collect_ignore = []
if find_spec("tensorflow") is None:
    collect_ignore += ["src/infoloss/_tf_namespace.py", "src/infoloss/_frameworks/tensorflow.py"]
if find_spec("keras") is None:
    collect_ignore += ["src/infoloss/keras.py"]
