"""The model zoo: turn a model entry into a local diffusers folder (`source`, `hub`, the toy world), load it
(`zoo`), count its cost (`flops`, `architectures`) and run it fast (`gpu`, `families`)."""
