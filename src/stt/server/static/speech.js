// The latency a person feels, measured in the page from the microphone's loudness:
//   first word: from the start of speech (after silence) to the first word that follows it;
//   last word: from the end of speech to the last word that arrives before speech resumes.
// Loudness is each 80 ms frame's RMS (from the worklet); speech is a frame louder than the
// noise floor by MARGIN_DB (and above FLOOR_DB), and it ends after HANGOVER_MS of quiet.

const FLOOR_DB = -50;
const MARGIN_DB = 12;
const HANGOVER_MS = 400;

export const decibels = (rms) => (rms > 0 ? 20 * Math.log10(rms) : -120);

export class SpeechClock {
  constructor() {
    this.noiseDb = FLOOR_DB - MARGIN_DB;
    this.speaking = false;
    this.speechStart = null; // page time (ms) the current/last speech began
    this.lastVoiced = null; // page time the last loud frame ended
    this.speechEnd = null; // set once speech has ended, until it resumes
    this.waitingFirst = false;
    this.firstMs = []; // one measurement per utterance
    this.lastMs = null;
  }

  /** One frame of `durationMs` audio with loudness `rms`, which reached the page at `now`. */
  frame(rms, durationMs, now) {
    const db = decibels(rms);
    const loud = db > Math.max(FLOOR_DB, this.noiseDb + MARGIN_DB);
    // The noise floor follows quiet frames quickly and loud ones slowly.
    this.noiseDb += (db - this.noiseDb) * (loud ? 0.002 : 0.05);
    if (loud) {
      if (!this.speaking) {
        this.speaking = true;
        this.speechStart = now - durationMs; // the frame began one frame earlier
        this.speechEnd = null;
        this.waitingFirst = true;
      }
      this.lastVoiced = now;
    } else if (this.speaking && now - this.lastVoiced >= HANGOVER_MS) {
      this.speaking = false;
      this.speechEnd = this.lastVoiced;
    }
    return db;
  }

  /** A word arrived at page time `now`. */
  word(now) {
    if (this.waitingFirst && this.speechStart !== null) {
      this.firstMs.push(now - this.speechStart);
      this.waitingFirst = false;
    }
    if (!this.speaking && this.speechEnd !== null) this.lastMs = now - this.speechEnd;
  }

  /** Speech stopped with the stream (Stop): what is still said counts as ended now. */
  stop(now) {
    if (this.speaking) {
      this.speaking = false;
      this.speechEnd = Math.min(now, this.lastVoiced ?? now);
    }
  }

  get latestFirstMs() {
    return this.firstMs.length ? this.firstMs[this.firstMs.length - 1] : null;
  }
}
