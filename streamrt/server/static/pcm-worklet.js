// AudioWorklet: collects the microphone's mono samples (at the AudioContext's rate) into chunks of
// `chunkSamples` and posts each chunk (a Float32Array) to the page.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunkSamples = (options.processorOptions && options.processorOptions.chunkSamples) || 1600;
    this.buffer = new Float32Array(this.chunkSamples);
    this.filled = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const mono = input[0];
      let i = 0;
      while (i < mono.length) {
        const n = Math.min(mono.length - i, this.chunkSamples - this.filled);
        this.buffer.set(mono.subarray(i, i + n), this.filled);
        this.filled += n;
        i += n;
        if (this.filled === this.chunkSamples) {
          this.port.postMessage(this.buffer);
          this.buffer = new Float32Array(this.chunkSamples);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor('pcm-capture', PcmCapture);
