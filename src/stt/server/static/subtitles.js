// Plain text, SubRip (.srt) and WebVTT (.vtt) from word times, cut into cues by the same
// rules as the server's response formats (stt.transcript_format.CueRules; a browser test
// checks that both give the same files). A word is {text, start_s, end_s}.

export const RULES = Object.freeze({
  pauseS: 0.6, // a silence this long between two words ends a cue
  lineChars: 42,
  maxLines: 2,
  maxDurationS: 6.0, // a cue ends before a word that would keep it on screen longer
  sentenceMinS: 1.5, // a cue ends after a sentence-ending word once it has lasted this long
});

const SENTENCE_END = [".", "?", "!", "\u2026", "\u3002", "\uff1f", "\uff01"];

export function transcriptText(words) {
  return words.map((w) => w.text).join(" ");
}

function endsBefore(current, chars, word, rules) {
  const first = current[0];
  const last = current[current.length - 1];
  if (word.start_s - last.end_s >= rules.pauseS) return true;
  if (chars + 1 + word.text.length > rules.lineChars * rules.maxLines) return true;
  if (word.end_s - first.start_s > rules.maxDurationS) return true;
  return SENTENCE_END.some((mark) => last.text.endsWith(mark)) && last.end_s - first.start_s >= rules.sentenceMinS;
}

/** Group words (in stream order) into cues: arrays of words. */
export function cutCues(words, rules = RULES) {
  const cues = [];
  let current = [];
  let chars = 0;
  for (const word of words) {
    if (current.length && endsBefore(current, chars, word, rules)) {
      cues.push(current);
      current = [];
      chars = 0;
    }
    chars += word.text.length + (current.length ? 1 : 0);
    current.push(word);
  }
  if (current.length) cues.push(current);
  return cues;
}

/** A cue's text on two lines, split where they balance best, when it does not fit on one. */
export function cueLines(cue, lineChars = RULES.lineChars) {
  const text = transcriptText(cue);
  if (text.length <= lineChars || cue.length < 2) return [text];
  let best = 1;
  let bestWidth = text.length;
  for (let cut = 1; cut < cue.length; cut++) {
    const first = transcriptText(cue.slice(0, cut));
    const width = Math.max(first.length, text.length - first.length - 1);
    if (width < bestWidth) {
      best = cut;
      bestWidth = width;
    }
  }
  return [transcriptText(cue.slice(0, best)), transcriptText(cue.slice(best))];
}

/** HH:MM:SS,mmm (separator ",") or HH:MM:SS.mmm ("."). */
export function timestamp(seconds, separator) {
  let ms = Math.max(0, roundHalfEven(seconds * 1000));
  const pad = (n, width) => String(n).padStart(width, "0");
  const hours = Math.floor(ms / 3600000);
  ms -= hours * 3600000;
  const minutes = Math.floor(ms / 60000);
  ms -= minutes * 60000;
  const secs = Math.floor(ms / 1000);
  ms -= secs * 1000;
  return `${pad(hours, 2)}:${pad(minutes, 2)}:${pad(secs, 2)}${separator}${pad(ms, 3)}`;
}

function roundHalfEven(x) {
  // Python's round(): halves go to the even neighbour.
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

const cueStart = (cue) => cue[0].start_s;
const cueEnd = (cue) => Math.max(cue[cue.length - 1].end_s, cue[0].start_s);

export function toText(words) {
  return words.length ? `${transcriptText(words)}\n` : "";
}

export function toSrt(words, rules = RULES) {
  return cutCues(words, rules)
    .map((cue, i) => {
      const span = `${timestamp(cueStart(cue), ",")} --> ${timestamp(cueEnd(cue), ",")}`;
      return `${[String(i + 1), span, ...cueLines(cue, rules.lineChars)].join("\n")}\n\n`;
    })
    .join("");
}

const vttEscape = (line) => line.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

export function toVtt(words, rules = RULES) {
  const blocks = cutCues(words, rules).map((cue) => {
    const span = `${timestamp(cueStart(cue), ".")} --> ${timestamp(cueEnd(cue), ".")}`;
    return `${[span, ...cueLines(cue, rules.lineChars).map(vttEscape)].join("\n")}\n\n`;
  });
  return `WEBVTT\n\n${blocks.join("")}`;
}
