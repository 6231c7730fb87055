"""A deliberately minimal WebSocket client over a raw socket, for hostile-client tests.

Library clients read in the background and answer pings; an attacker (or a dead peer) does
not. This one does exactly what the test says and nothing else.
"""

from __future__ import annotations

import base64
import os
import socket
import struct


class RawWebSocket:
    def __init__(self, host: str, port: int, path: str = "/v1/stream", *, rcvbuf: int | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during handshake")
            response += chunk
        self.status = int(response.split()[1])

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """One masked, final frame (opcode 1 text, 2 binary, 8 close)."""
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = (
            bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if n < 1 << 16
            else _mask_fast(payload, mask)
        )
        self.sock.sendall(header + mask + masked)

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame; (-1, b"") at end of stream."""
        head = self._read(2)
        if len(head) < 2:
            return -1, b""
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return head[0] & 0x0F, self._read(n)

    def read_until_close(self) -> tuple[list[bytes], int | None]:
        """Text payloads until a close frame (its code) or the end of the connection (None)."""
        texts: list[bytes] = []
        while True:
            opcode, payload = self.read_frame()
            if opcode == 1:
                texts.append(payload)
            elif opcode == 8:
                return texts, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            elif opcode == -1:
                return texts, None

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def _mask_fast(payload: bytes, mask: bytes) -> bytes:
    import numpy as np

    data = np.frombuffer(payload, dtype=np.uint8)
    key = np.frombuffer(mask * ((len(payload) + 3) // 4), dtype=np.uint8)[: len(payload)]
    return (data ^ key).tobytes()
