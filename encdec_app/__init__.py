"""The application on top of the library: the ``encdec`` command (``encdec_app.cli``) and its demo.

It stands above the three framework packages and ``conversion``, and is the one package that
reaches up into the frameworks, each lazily, when a command needs it (``encdec_app.frameworks``).
"""
