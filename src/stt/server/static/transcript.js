// The transcript shown in #transcript: utterances of words, the current one distinct from
// finished ones, each word a <span class="word"> with its times on hover (title).
// An utterance ends at an end-of-turn mark (Pause) or at a gap of UTTERANCE_GAP_S between words.

const UTTERANCE_GAP_S = 1.0;

const seconds = (s) => `${s.toFixed(2)} s`;

export class Transcript {
  constructor(element) {
    this.element = element;
    this.clear();
  }

  clear() {
    this.words = [];
    this.current = null; // the open utterance's element
    this.element.replaceChildren();
    this.element.dataset.words = "0";
  }

  /** Add a live word ({text, start_s, end_s}). */
  add(word) {
    const previous = this.words[this.words.length - 1];
    if (this.current && previous && word.start_s - previous.end_s >= UTTERANCE_GAP_S) this.finish(false);
    if (!this.current) {
      this.current = document.createElement("p");
      this.current.className = "utterance current";
      this.element.append(this.current);
    }
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = word.text;
    span.title = `${seconds(word.start_s)} – ${seconds(word.end_s)}`;
    span.dataset.start = String(word.start_s);
    span.dataset.end = String(word.end_s);
    if (this.current.childElementCount) this.current.append(" ");
    this.current.append(span);
    this.words.push(word);
    this.element.dataset.words = String(this.words.length);
    this.current.scrollIntoView?.({ block: "nearest" });
  }

  /** Close the current utterance; `turn`: the engine marked an end of turn there. */
  finish(turn) {
    if (!this.current) return;
    this.current.classList.remove("current");
    if (turn) {
      this.current.classList.add("turn");
      this.current.setAttribute("aria-label", "end of turn");
    }
    this.current = null;
  }

  /** Replace everything with `words` (a Final's, or a file's), all finished. */
  replace(words) {
    this.clear();
    for (const word of words) this.add(word);
    this.finish(false);
  }
}
