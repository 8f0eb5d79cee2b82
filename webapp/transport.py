"""Socket.IO packets checked before anything is buffered, and connections that break the packet
format closed at once (docs/protocol.md).

* ``FramePacket`` (the server's ``serializer``) refuses a packet that declares more binary
  attachments than the protocol allows, one for ``frame`` and none elsewhere, or placeholders that do
  not match its attachments. python-socketio accepts up to ten digits of attachment count and
  buffers every attachment until the count is reached: one client could make the server hold
  gigabytes, and a placeholder pointing past the attachments left its connection dead but open.
* ``harden(server, on_refused)`` makes every packet the server cannot handle (broken JSON, too deep,
  refused by ``FramePacket``, a stray attachment) close that client's connection with one log line
  that quotes nothing of the packet. Before, python-engineio logged each one twice (its own handler
  and ours) and kept the connection open. It also makes Engine.IO's server-side disconnect return at
  once: ``Socket.close(wait=True)`` waits for the client to poll for its CLOSE packet, which a
  long-polling client that went away never does (python-engineio PR #60 describes the same hang).
* ``close_all(server)`` (the server stopping) also ends the reading side of every WebSocket's TCP
  connection: Engine.IO's writer closes the socket under the reader, epoll reports nothing for a
  closed descriptor (gevent #26 describes the same), and the reader waited out its 45 s timeout,
  holding every stop of gunicorn for its whole graceful timeout. Only then: a socket closed with
  unread data sends a reset, which can cost a client that is still sending its last answers.
* A connection the server ends itself (``abuse``, an invalid packet) lingers: the TCP connection is
  kept open, for at most ``LINGER`` seconds, and what the client still sends is read and dropped
  until the client closes it. Closed at once, with the rest of a flood unread, it sent a reset; the
  client's next write then failed, and python-engineio's client stops reading when a write fails:
  the ``abuse`` error and the close, already on their way, were never read (lost 19 times in 25 on
  a loaded machine). nginx's ``lingering_close`` is the same idea.
"""
from __future__ import annotations

import _socket  # the unpatched socket type: eventlet's monkey-patching leaves it alone
import logging
import os
import time

from socketio import packet as sio_packet

log = logging.getLogger("webapp.transport")
BINARY_EVENTS = {"frame": 1, "why": 1}  # event name -> binary attachments it may carry; any other: none
LINGER = 5.0  # seconds a connection the server ends keeps reading (and dropping) what its client sends


class PacketError(ValueError):
    """A packet that is valid JSON but breaks the protocol's attachment rules."""


def _placeholders(data) -> list:
    """The ``num`` of every binary placeholder in ``data`` (iterative: the nesting is the client's)."""
    nums, stack = [], [data]
    while stack:
        d = stack.pop()
        if isinstance(d, list):
            stack.extend(d)
        elif isinstance(d, dict):
            if d.get("_placeholder") and "num" in d:
                nums.append(d["num"])
            else:
                stack.extend(d.values())
    return nums


class FramePacket(sio_packet.Packet):
    def decode(self, encoded_packet):
        count = super().decode(encoded_packet) or 0
        if self.packet_type in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK):
            name = self.data[0] if self.packet_type == sio_packet.BINARY_EVENT and isinstance(self.data, list) \
                and self.data and isinstance(self.data[0], str) else None
            allowed = BINARY_EVENTS.get(name, 0)
            if not 1 <= count <= allowed:
                raise PacketError(f"{count} binary attachments declared, {allowed} allowed for this event")
            nums = _placeholders(self.data)
            if any(type(n) is not int for n in nums) or sorted(nums) != list(range(count)):
                raise PacketError("placeholders do not match the declared attachments")
        return count


def close_connection(server, eio_sid: str) -> None:
    """End every Socket.IO session of Engine.IO connection ``eio_sid``, then the connection itself."""
    for ns in list(server.manager.get_namespaces()):
        sid = server.manager.sid_from_eio_sid(eio_sid, ns)
        if sid is not None and server.manager.is_connected(sid, ns):
            server.disconnect(sid, namespace=ns, ignore_queue=True)
    getattr(server, "_binary_packet", {}).pop(eio_sid, None)
    server.eio.disconnect(eio_sid)


def harden(server, on_refused=None) -> None:
    """Install the packet checks' consequences on a python-socketio ``server`` (see the module doc).
    ``on_refused(eio_sid, reason)`` is called once per refused connection (stats)."""
    eio = server.eio
    handle = server._handle_eio_message  # the private entry point both the transport and the test client use

    def message(eio_sid, data):
        try:
            return handle(eio_sid, data)
        except Exception as e:  # noqa: BLE001 - any packet we cannot handle ends its connection
            environ = server.environ.get(eio_sid)
            if environ is None:  # closed already: what it had sent before the close is still read
                return None
            reason = str(e) if isinstance(e, PacketError) else f"{type(e).__name__} while decoding"
            peer = environ.get("REMOTE_ADDR", "?")
            log.warning("closed the connection of %s: a packet that is not valid Socket.IO (%s)", peer, reason)
            if on_refused is not None:
                on_refused(eio_sid, reason)
            try:
                close_connection(server, eio_sid)
            except Exception as e2:  # noqa: BLE001 - already gone (or the test client, with no transport)
                log.debug("closing a refused connection: %s", type(e2).__name__)
            server.environ.pop(eio_sid, None)  # what else it sent is dropped without a word (see above)

    def disconnect(sid=None):
        for s in ([sid] if sid is not None else list(eio.sockets)):
            sock = eio.sockets.get(s)
            if sock is not None and not sock.closed:
                tcp = _tcp_socket(server.environ.get(s)) if sid is not None and sock.upgraded else None
                sock.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)  # queues CLOSE for the writer
                if tcp is not None:
                    _linger(tcp, LINGER)
            eio.sockets.pop(s, None)

    server._handle_eio_message = message
    eio.on("message", message)
    eio.disconnect = disconnect


def close_all(server) -> int:
    """Disconnect every client of ``server`` (hardened) and end its WebSocket readers; returns how many."""
    eio = server.eio
    tcp = [_tcp_socket(server.environ.get(s)) for s, sock in list(eio.sockets.items()) if sock.upgraded]
    n = len(eio.sockets)
    eio.disconnect()  # queues each one's CLOSE packet, after its last answers
    for sock in tcp:
        if sock is not None:
            _stop_reading(sock)
    return n


def _tcp_socket(environ):
    """The connection's socket under eventlet's server or gunicorn's eventlet worker, else None."""
    inp = (environ or {}).get("eventlet.input")
    try:
        return inp.get_socket() if inp is not None else None
    except Exception:  # noqa: BLE001 - no socket behind this input
        return None


def _linger(sock, seconds: float) -> None:
    """Keep ``sock``'s TCP connection open on a duplicate descriptor for up to ``seconds``, reading
    and dropping what arrives, until the client closes it (see the module doc). Under eventlet only:
    elsewhere there is no such socket to hand."""
    from . import eventlet_env
    if not eventlet_env.patched():
        return
    dup = _duplicate(sock)
    if dup is None:
        return
    import eventlet
    from eventlet.greenio import GreenSocket

    def drain():
        s = GreenSocket(dup)
        end = time.monotonic() + seconds
        try:
            while (left := end - time.monotonic()) > 0:
                s.settimeout(left)
                if not s.recv(65536):
                    break
        except OSError:  # timed out, or reset by the client
            pass
        finally:
            s.close()

    eventlet.spawn_n(drain)


def _stop_reading(sock) -> None:
    """shutdown(SHUT_RD) on the connection: its reader sees end of file now; what the writer has
    queued (the CLOSE packet, last answers) still goes out. A duplicate descriptor is used so that a
    TLS socket's own shutdown(), which drops its TLS state, is not called."""
    dup = _duplicate(sock)
    if dup is None:
        return
    try:
        dup.shutdown(_socket.SHUT_RD)
    except OSError:  # reset meanwhile
        pass
    finally:
        dup.close()


def _duplicate(sock):
    """A socket on a duplicate of ``sock``'s descriptor (closing it leaves ``sock`` open), or None
    where ``sock`` is closed already."""
    try:
        fd = sock.fileno()
        return _socket.socket(fileno=os.dup(fd)) if fd >= 0 else None
    except OSError:  # closed meanwhile
        return None
