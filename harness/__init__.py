"""What tests/ and bench/ share: the web server started as documented (``server``), and clients
that talk to it, well-behaved (``server.Client``) or hostile (``hostile``). Not part of the product."""
