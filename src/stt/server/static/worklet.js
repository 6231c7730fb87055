// AudioWorklet processor: the microphone's audio, mixed to mono, resampled to 24 kHz and cut
// into 80 ms PCM16 frames (1920 samples), each posted to the page with its loudness (RMS).
//
// Resampling is a windowed-sinc interpolator (a low-pass at the lower of the two Nyquist
// rates, so 48 kHz input does not alias into the 24 kHz stream). It keeps only the input
// samples that the next output samples still need.

const TAPS_PER_SIDE = 16; // zero crossings of the sinc on each side of an output sample

class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    this.cutoff = Math.min(1, outRate / inRate); // low-pass, as a fraction of the input Nyquist rate
    this.half = Math.ceil(TAPS_PER_SIDE / this.cutoff); // kernel half-width in input samples
    this.passthrough = inRate === outRate;
    this.buffer = new Float32Array(4096);
    this.length = 0; // valid samples in buffer
    this.position = 0; // input position (in buffer samples) of the next output sample
  }

  /** Append input samples; call emit(sample) for every output sample they complete. */
  push(input, emit) {
    if (this.passthrough) {
      for (let i = 0; i < input.length; i++) emit(input[i]);
      return;
    }
    this.append(input);
    const { half, cutoff, step } = this;
    while (Math.floor(this.position) + half < this.length) {
      const center = Math.floor(this.position);
      let sum = 0;
      for (let k = center - half + 1; k <= center + half; k++) {
        if (k < 0) continue; // before the first sample: silence
        const x = (this.position - k) * cutoff;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
        const w = (this.position - k) / half; // -1..1 across the kernel
        const window = 0.5 + 0.5 * Math.cos(Math.PI * w); // Hann
        sum += this.buffer[k] * sinc * window;
      }
      emit(sum * cutoff);
      this.position += step;
    }
    this.discard(Math.floor(this.position) - half);
  }

  append(input) {
    if (this.length + input.length > this.buffer.length) {
      const grown = new Float32Array(Math.max(this.buffer.length * 2, this.length + input.length));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(input, this.length);
    this.length += input.length;
  }

  discard(count) {
    if (count <= 0) return;
    this.buffer.copyWithin(0, count, this.length);
    this.length -= count;
    this.position -= count;
  }
}

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { outRate, frameSamples } = options.processorOptions;
    this.resampler = new Resampler(sampleRate, outRate);
    this.frameSamples = frameSamples;
    this.newFrame();
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        // The last frame may be shorter (the server accepts a short last chunk).
        this.post(true);
        this.stopped = true;
      }
    };
    this.emit = (sample) => {
      const s = Math.max(-1, Math.min(1, sample));
      this.sumSquares += s * s;
      this.frame[this.filled++] = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
      if (this.filled === this.frameSamples) this.post(false);
    };
  }

  newFrame() {
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
  }

  post(last) {
    const samples = this.filled;
    const rms = samples ? Math.sqrt(this.sumSquares / samples) : 0;
    const pcm = this.frame.buffer.slice(0, samples * 2);
    this.port.postMessage({ pcm, samples, rms, last }, [pcm]);
    this.newFrame();
  }

  process(inputs) {
    if (this.stopped) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    let mono = channels[0];
    if (channels.length > 1) {
      mono = new Float32Array(channels[0].length);
      for (const channel of channels) for (let i = 0; i < mono.length; i++) mono[i] += channel[i];
      for (let i = 0; i < mono.length; i++) mono[i] /= channels.length;
    }
    this.resampler.push(mono, this.emit);
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
