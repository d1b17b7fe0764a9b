"""i3d: an exact, fast Inflated 3D ConvNet (Carreira and Zisserman, CVPR 2017)."""

__version__ = "0.1.0"
