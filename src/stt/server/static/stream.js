// One /v1/stream connection as an explicit state machine (docs/protocol.md):
//   connecting -> ready (Ready received, Configure sent) -> closing (CloseStream sent) -> closed
// and from any state -> failed (an Error, or the connection dropped). `handlers` receive
// onReady(ready), onWord(word), onPause(pause), onFinal(final), onWarning(warning),
// onFailure({code, message, closeCode, hadReady}) and onClosed().

export const State = Object.freeze({
  CONNECTING: "connecting",
  READY: "ready",
  CLOSING: "closing",
  CLOSED: "closed",
  FAILED: "failed",
});

export function streamUrl(location, token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}//${location.host}/v1/stream${query}`;
}

export class StreamClient {
  constructor(url, { language, handlers }) {
    this.handlers = handlers;
    this.language = language; // "" = let the engine decide
    this.state = State.CONNECTING;
    this.ready = null;
    this.sentSamples = 0;
    this.error = null;
    this.final = null;
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (event) => this.receive(event.data);
    this.ws.onclose = (event) => this.closed(event);
  }

  /** The language actually asked for: the choice if the engine takes it, else null (auto). */
  languageFor(ready) {
    return this.language && ready.languages.includes(this.language) ? this.language : null;
  }

  receive(data) {
    if (typeof data !== "string") return;
    const message = JSON.parse(data);
    switch (message.type) {
      case "Ready": {
        this.ready = message;
        const configure = { type: "Configure", language: this.languageFor(message) };
        if (message.pauses) configure.pauses = true;
        this.ws.send(JSON.stringify(configure));
        this.state = State.READY;
        this.handlers.onReady(message, configure);
        break;
      }
      case "Word":
        this.handlers.onWord(message);
        break;
      case "Pause":
        this.handlers.onPause(message);
        break;
      case "Final":
        this.final = message;
        this.handlers.onFinal(message);
        break;
      case "Warning":
        this.handlers.onWarning(message);
        break;
      case "Error":
        this.error = message;
        break;
      default:
        break; // Flushed and future message types: nothing to show
    }
  }

  /** Send one frame of PCM16 audio (only once Ready has been answered). */
  sendAudio(pcm, samples) {
    if (this.state !== State.READY || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(pcm);
    this.sentSamples += samples;
    return true;
  }

  /** End of stream: the server flushes, sends Final and closes with 1000. */
  close() {
    if (this.state === State.READY && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "CloseStream" }));
      this.state = State.CLOSING;
    } else if (this.state === State.CONNECTING) {
      this.state = State.CLOSING;
      this.ws.close(1000);
    }
  }

  closed(event) {
    const clean = event.code === 1000 || event.code === 1001;
    if (this.error) {
      this.state = State.FAILED;
      this.handlers.onFailure({ ...this.error, closeCode: event.code, hadReady: this.ready !== null });
    } else if (clean && (this.state === State.CLOSING || this.final)) {
      // Our CloseStream, or the server ended the stream itself (session limit, shutdown).
      this.state = State.CLOSED;
      this.handlers.onClosed();
    } else {
      // No Error message: refused before the upgrade (HTTP 401/429: the browser only sees a
      // failed connection) or the connection dropped.
      this.state = State.FAILED;
      this.handlers.onFailure({ code: null, message: "", closeCode: event.code, hadReady: this.ready !== null });
    }
  }
}
