"""What tests/ and bench/ share: the web server started as documented (``server``), clients that
talk to it, well-behaved (``server.Client``) or hostile (``hostile``), and the machine's yardstick
(``yardstick``). Not part of the product."""
