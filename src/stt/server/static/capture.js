// Microphone capture: getUserMedia -> AudioWorklet (worklet.js) -> 80 ms PCM16 frames at 24 kHz.

export const STREAM_RATE = 24000;
export const FRAME_SAMPLES = 1920; // 80 ms: the model consumes one such frame per step

/**
 * Start capturing. `onFrame({pcm, samples, rms, last})` gets each frame (pcm: ArrayBuffer of
 * PCM16 little-endian). Resolves to an object whose `stop()` flushes the last partial frame,
 * then releases the microphone.
 */
export async function startCapture(onFrame) {
  // The worklet is loaded before the microphone opens, so that no speech is lost meanwhile.
  const context = new AudioContext();
  let media = null;
  try {
    await context.audioWorklet.addModule(new URL("./worklet.js", import.meta.url));
    media = await navigator.mediaDevices.getUserMedia({
      // The raw signal: the page plays nothing back (no echo to cancel), and the models are
      // trained on unprocessed audio (gain control and noise suppression distort it).
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    const source = context.createMediaStreamSource(media);
    const node = new AudioWorkletNode(context, "pcm-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCountMode: "explicit",
      channelCount: 1,
      processorOptions: { outRate: STREAM_RATE, frameSamples: FRAME_SAMPLES },
    });
    // A silent path to the speakers keeps the node in the rendered graph in every browser.
    const mute = new GainNode(context, { gain: 0 });
    source.connect(node).connect(mute).connect(context.destination);
    let flushed;
    const done = new Promise((resolve) => (flushed = resolve));
    node.port.onmessage = (event) => {
      onFrame(event.data);
      if (event.data.last) flushed();
    };
    if (context.state !== "running") await context.resume();
    return {
      inputRate: context.sampleRate,
      running: () => context.state === "running",
      resume: () => context.resume(),
      async stop() {
        node.port.postMessage("flush");
        await Promise.race([done, new Promise((r) => setTimeout(r, 500))]);
        for (const track of media.getTracks()) track.stop();
        await context.close();
      },
    };
  } catch (error) {
    for (const track of media?.getTracks() ?? []) track.stop();
    await context.close();
    throw error;
  }
}
