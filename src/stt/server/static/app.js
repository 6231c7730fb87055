// The page: wires the microphone, the stream, the transcript, the status line, the file
// upload and the downloads to the elements of index.html. Contract for checks from outside:
// /?autostart=1 starts capturing at load, and the words are in #transcript.

import { startCapture, STREAM_RATE } from "./capture.js";
import { DROPPED, NO_MICROPHONE, UNREACHABLE, plainWords } from "./errors.js";
import { SpeechClock } from "./speech.js";
import { StreamClient, streamUrl } from "./stream.js";
import { toSrt, toText, toVtt } from "./subtitles.js";
import { Transcript } from "./transcript.js";
import { answerWords, transcribeFile } from "./upload.js";

const $ = (id) => document.getElementById(id);
const KEY_ITEM = "stt-api-key"; // sessionStorage: kept for this tab only
const LANGUAGES_ITEM = "stt-languages";
const STATUS_EVERY_MS = 3000;
const LANGUAGE_NAMES = { en: "English", fr: "French" };

const transcript = new Transcript($("transcript"));
let stream = null;
let capture = null;
let clock = null;
let startAfterKey = false;

const token = () => sessionStorage.getItem(KEY_ITEM) ?? "";
const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

// -- messages -----------------------------------------------------------------------------

function showError(text, code, detail = "") {
  const box = $("error");
  box.dataset.code = code;
  box.replaceChildren(text);
  if (detail) {
    const small = document.createElement("small");
    small.textContent = ` Server said: ${detail}`;
    box.append(small);
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").dataset.code = "";
}

function note(text) {
  $("note").textContent = text;
}

function setConnection(state, text) {
  $("conn").dataset.state = state;
  $("conn").textContent = text;
}

// -- the API key --------------------------------------------------------------------------

function askForKey(refused) {
  $("key-form").hidden = false;
  if (refused) showError(plainWords("unauthorized"), "unauthorized");
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_ITEM, $("key").value.trim());
  $("key").value = "";
  $("key-form").hidden = true;
  clearError();
  refreshStatus().then((status) => {
    if (status === 200 && startAfterKey) start();
  });
});

// -- server status ------------------------------------------------------------------------

/** GET /v1/status: shows the engine and free slots; returns the HTTP status (0: unreachable). */
async function refreshStatus() {
  let response;
  try {
    response = await fetch("/v1/status", { headers: authHeaders(), cache: "no-store" });
  } catch {
    $("slots").textContent = "–";
    return 0;
  }
  if (response.status === 401) {
    askForKey(token() !== "");
    return 401;
  }
  if (response.ok) {
    const body = await response.json();
    $("engine").textContent = body.engine;
    $("slots").textContent = `${body.slots_free} of ${body.slots_total}`;
    $("slots").dataset.free = String(body.slots_free);
  }
  return response.status;
}

// -- languages ----------------------------------------------------------------------------

function showLanguages(languages, chosen) {
  const select = $("language");
  const options = [new Option("auto", "")];
  for (const code of languages) options.push(new Option(LANGUAGE_NAMES[code] ?? code, code));
  select.replaceChildren(...options);
  select.value = chosen ?? "";
  sessionStorage.setItem(LANGUAGES_ITEM, JSON.stringify(languages));
}

// -- latency ------------------------------------------------------------------------------

function showLatency() {
  const show = (id, ms) => {
    $(id).textContent = ms === null ? "–" : `${(ms / 1000).toFixed(2)} s`;
    $(id).dataset.ms = ms === null ? "" : String(Math.round(ms));
  };
  show("latency-first", clock.latestFirstMs);
  show("latency-last", clock.lastMs);
  $("latency-first").dataset.all = JSON.stringify(clock.firstMs.map(Math.round));
}

// -- the live stream ----------------------------------------------------------------------

function onFrame({ pcm, samples, rms }) {
  if (!stream || !clock) return;
  $("level").value = Math.max(-60, clock.frame(rms, (samples / STREAM_RATE) * 1000, performance.now()));
  stream.sendAudio(pcm, samples);
}

async function beginCapture() {
  try {
    capture = await startCapture(onFrame);
  } catch (error) {
    showError(NO_MICROPHONE, "no_microphone", String(error.message ?? error));
    stream?.close();
    return;
  }
  if (!stream) {
    await stopCapture(); // the stream failed while the microphone was starting
    return;
  }
  note(`Listening (microphone at ${capture.inputRate} Hz, sent at ${STREAM_RATE} Hz).`);
  if (!capture.running()) {
    note("The browser holds the audio until you interact: press any key or click the page.");
    const resume = () => capture?.resume().then(() => note("Listening."));
    document.addEventListener("pointerdown", resume, { once: true });
    document.addEventListener("keydown", resume, { once: true });
  }
}

async function stopCapture() {
  const running = capture;
  capture = null;
  if (running) await running.stop();
}

function streamEnded() {
  stream = null;
  stopCapture();
  transcript.finish(false);
  $("start").disabled = false;
  $("stop").disabled = true;
  $("language").disabled = false;
  $("file-input").disabled = false;
  $("level").value = -60;
  refreshStatus();
}

const handlers = {
  onReady(ready, configure) {
    setConnection("connected", "connected");
    $("engine").textContent = ready.engine;
    showLanguages(ready.languages, configure.language);
    const chosen = $("language").dataset.chosen;
    if (chosen && !configure.language) note(`This engine takes no "${chosen}" hint: language is automatic.`);
    $("transcript").classList.toggle("with-turns", Boolean(ready.pauses));
    beginCapture();
  },
  onWord(word) {
    transcript.add(word);
    clock.word(performance.now());
    showLatency();
  },
  onPause() {
    transcript.finish(true);
  },
  onFinal(final) {
    transcript.replace(final.words.map((w) => ({ text: w.word, start_s: w.start_s, end_s: w.end_s })));
    const words = final.words.length;
    $("final").textContent =
      `Final (${final.status}): ${words} word${words === 1 ? "" : "s"}, ${final.audio_s.toFixed(1)} s of audio.`;
    $("final").hidden = false;
  },
  onWarning(warning) {
    note(warning.message);
  },
  async onFailure(failure) {
    setConnection("disconnected", "disconnected");
    if (failure.code) {
      showError(plainWords(failure.code), failure.code, failure.message);
    } else if (!failure.hadReady) {
      // Refused before the upgrade: the browser does not say why, /v1/status does.
      const status = await refreshStatus();
      if (status === 401) showError(plainWords("unauthorized"), "unauthorized");
      else if (status === 0) showError(UNREACHABLE, "unreachable");
      else showError(`${DROPPED} It was refused before it started (close code ${failure.closeCode}).`, "dropped");
    } else {
      showError(`${DROPPED} (close code ${failure.closeCode})`, "dropped");
    }
    streamEnded();
  },
  onClosed() {
    setConnection("closed", "stream ended");
    streamEnded();
  },
};

async function start() {
  if (stream) return;
  clearError();
  note("");
  const status = await refreshStatus();
  if (status === 401) {
    startAfterKey = true;
    return;
  }
  if (status === 0) {
    showError(UNREACHABLE, "unreachable");
    return;
  }
  transcript.clear();
  $("final").hidden = true;
  $("source").textContent = "From the microphone";
  clock = new SpeechClock();
  showLatency();
  $("start").disabled = true;
  $("stop").disabled = false;
  $("language").disabled = true;
  $("file-input").disabled = true;
  $("language").dataset.chosen = $("language").value;
  setConnection("connecting", "connecting…");
  stream = new StreamClient(streamUrl(location, token()), { language: $("language").value, handlers });
}

async function stop() {
  if (!stream) return;
  $("stop").disabled = true;
  setConnection("closing", "finishing…");
  clock?.stop(performance.now());
  await stopCapture(); // its last partial frame is sent before CloseStream
  stream?.close();
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);

// -- a file -------------------------------------------------------------------------------

async function sendFile(file) {
  if (!file || stream) return;
  clearError();
  const progress = $("upload-progress");
  progress.hidden = false;
  progress.value = 0;
  $("upload-state").textContent = `Uploading ${file.name}…`;
  try {
    const answer = await transcribeFile(file, {
      token: token(),
      language: $("language").value,
      onProgress(fraction, phase) {
        progress.value = Math.round(fraction * 100);
        if (phase === "transcribing") $("upload-state").textContent = `Transcribing ${file.name}…`;
      },
    });
    const words = answerWords(answer);
    transcript.replace(words);
    if (!words.length && answer.text) $("transcript").textContent = answer.text;
    $("source").textContent = `From the file ${file.name}`;
    $("final").textContent = `${words.length} words, ${answer.duration.toFixed(1)} s of audio.`;
    $("final").hidden = false;
    $("upload-state").textContent = `Transcribed ${file.name}.`;
  } catch (error) {
    $("upload-state").textContent = `${file.name} was not transcribed.`;
    if (error.status === 401) askForKey(true);
    else if (error.status === 0) showError(UNREACHABLE, "unreachable");
    else showError(plainWords(error.code ?? "bad_request"), error.code ?? "bad_request", error.message);
  } finally {
    progress.hidden = true;
    $("file-input").value = "";
  }
}

$("file-input").addEventListener("change", (event) => sendFile(event.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  sendFile(event.dataTransfer.files[0]);
});

// -- copy and download --------------------------------------------------------------------

$("copy").addEventListener("click", async () => {
  const text = toText(transcript.words);
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API outside secure contexts (plain HTTP to another host): select and copy.
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  note("Transcript copied.");
});

function download(extension, type, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = `transcript.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(link.href);
}

$("download-txt").addEventListener("click", () => download("txt", "text/plain", toText(transcript.words)));
$("download-srt").addEventListener("click", () => download("srt", "application/x-subrip", toSrt(transcript.words)));
$("download-vtt").addEventListener("click", () => download("vtt", "text/vtt", toVtt(transcript.words)));

// -- at load ------------------------------------------------------------------------------

const knownLanguages = JSON.parse(sessionStorage.getItem(LANGUAGES_ITEM) ?? '["en", "fr"]');
showLanguages(knownLanguages, "");
setInterval(() => {
  if (document.visibilityState === "visible" && $("key-form").hidden) refreshStatus();
}, STATUS_EVERY_MS);
refreshStatus().then(() => {
  if (new URLSearchParams(location.search).get("autostart") === "1") start();
});
