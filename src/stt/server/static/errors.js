// Every error code of docs/protocol.md (WebSocket and HTTP), in plain words.

const WORDS = Object.freeze({
  over_capacity: "The server is full: every slot is busy. Try again later.",
  unauthorized: "The server refused the API key: check the key.",
  draining: "The server is shutting down. Try again in a moment.",
  too_fast: "The server could not keep up with the audio (it or the network is overloaded). Start again.",
  rate_limited: "Too many requests in a short time. Wait a moment and try again.",
  idle_timeout: "No audio reached the server for too long, so it closed the stream.",
  too_large: "That was too large for the server.",
  bad_frame: "The server could not read the audio the page sent (a bug in the page).",
  bad_message: "The server did not accept a message from the page (a bug in the page).",
  internal_error: "The speech engine failed. Try again.",
  bad_request: "The server did not accept the request.",
  bad_audio: "This file is not audio the server can read.",
});

export const DROPPED = "The connection to the server dropped.";
export const UNREACHABLE = "The server cannot be reached. Is it running?";
export const NO_MICROPHONE = "The browser gave the page no microphone.";

/** The plain-words sentence for an error `code` (a generic one for codes added later). */
export function plainWords(code) {
  return WORDS[code] ?? `The server reported an error (${code}).`;
}
