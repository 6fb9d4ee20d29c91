"""Framework adapters: one module per framework, imported only when its arrays are seen.

An adapter runs a validated spec (:mod:`infoloss._specs`) inside its framework's machinery
(autograd, compilation) and uses :mod:`infoloss._fast` and :mod:`infoloss._generic` below it;
it never imports the public modules or the router. :mod:`infoloss._router` chooses it.
"""
