// Audio helpers: base64 WAV to bytes and samples, and a gapless player of PCM chunks (Web Audio).

export function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The 16-bit mono samples of a WAV file (the API's JSON answer), as floats in [-1, 1]. */
export function wavSamples(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 12;
  let rate = 0;
  while (offset + 8 <= view.byteLength) {
    const id = String.fromCharCode(...bytes.subarray(offset, offset + 4));
    let size = view.getUint32(offset + 4, true);
    if (id === "fmt ") rate = view.getUint32(offset + 12, true);
    if (id === "data") {
      // A streamed WAV says 0xFFFFFFFF (length unknown): the data runs to the end.
      size = Math.min(size, view.byteLength - offset - 8);
      return { rate, samples: pcm16ToFloat(bytes.buffer.slice(bytes.byteOffset + offset + 8, bytes.byteOffset + offset + 8 + size - (size % 2))) };
    }
    offset += 8 + size + (size % 2);
  }
  throw new Error("not a WAV file");
}

export function pcm16ToFloat(buffer) {
  const ints = new Int16Array(buffer);
  const out = new Float32Array(ints.length);
  for (let i = 0; i < ints.length; i++) out[i] = ints[i] / 32768;
  return out;
}

/**
 * Plays 16-bit mono PCM chunks back to back as they arrive: each is scheduled to start exactly where the one
 * before ends on the AudioContext clock, so there is no gap or click between chunks.
 */
export class PcmPlayer {
  constructor() {
    this.ctx = null;
    this.sources = new Set();
    this.next = 0;
    this.rate = 22050;
    this.scheduled = 0; // seconds of audio handed to the context
    this.underruns = 0; // chunks that arrived after the audio before them had finished
  }

  /** Call from a click or key press (browsers let audio start from a user gesture). */
  async begin(rate) {
    if (!this.ctx || this.ctx.state === "closed") this.ctx = new AudioContext();
    await this.ctx.resume();
    this.stop();
    this.rate = rate;
    this.scheduled = 0;
    this.underruns = 0;
  }

  push(arrayBuffer) {
    if (!this.ctx || arrayBuffer.byteLength < 2) return;
    const samples = pcm16ToFloat(arrayBuffer.byteLength % 2 ? arrayBuffer.slice(0, -1) : arrayBuffer);
    const buffer = this.ctx.createBuffer(1, samples.length, this.rate);
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const now = this.ctx.currentTime;
    if (this.next && this.next < now) this.underruns += 1;
    const at = Math.max(this.next, now + 0.05);
    source.start(at);
    this.next = at + buffer.duration;
    this.scheduled += buffer.duration;
    this.sources.add(source);
    source.addEventListener("ended", () => this.sources.delete(source));
  }

  /** Seconds until the scheduled audio has played. */
  remaining() {
    return this.ctx ? Math.max(0, this.next - this.ctx.currentTime) : 0;
  }

  get playing() {
    return this.sources.size > 0;
  }

  stop() {
    for (const source of this.sources) {
      try {
        source.stop();
      } catch {
        // already stopped
      }
    }
    this.sources.clear();
    this.next = 0;
  }
}
