// livetrack wire protocol 1 (revision 1.1) for Node.js: see docs/protocol.md.
// Frames out (PUSH), results in (SUB), control (REQ); optional CURVE keys.
import { readFileSync } from "node:fs";
import { decode, encode } from "@msgpack/msgpack";
import * as zmq from "zeromq";

export const VERSION = 1;
export const TOPICS = ["det", "trk", "evt", "sta"];

// Pixel types a frame may carry, and their bytes per value.
const FRAME_DTYPES = {
  uint8: 1, uint16: 2, uint32: 4, int16: 2, int32: 4, float32: 4, float64: 8,
};
// Column types a result may carry: [bytes per value, DataView reader].
const COLUMN_DTYPES = {
  "<f4": [4, (v, o) => v.getFloat32(o, true)],
  "<f8": [8, (v, o) => v.getFloat64(o, true)],
  "<i4": [4, (v, o) => v.getInt32(o, true)],
  "<i8": [8, (v, o) => v.getBigInt64(o, true)],
  "<u1": [1, (v, o) => v.getUint8(o)],
  "<u2": [2, (v, o) => v.getUint16(o, true)],
  "<u4": [4, (v, o) => v.getUint32(o, true)],
};

/** Read a CURVE key file written by `livetrack keys` (ZPL: `public-key = "<Z85>"`). */
export function readKeyFile(path) {
  const text = readFileSync(path, "utf8");
  const pick = (name) => {
    const m = text.match(new RegExp(`^\\s*${name}\\s*=\\s*"([^"]{40})"`, "m"));
    return m ? m[1] : null;
  };
  return { publicKey: pick("public-key"), secretKey: pick("secret-key") };
}

function applyKeys(socket, keys) {
  if (!keys) return;
  // keys: { publicKey, secretKey, serverKey }, each a 40-character Z85 string
  socket.curvePublicKey = keys.publicKey;
  socket.curveSecretKey = keys.secretKey;
  socket.curveServerKey = keys.serverKey;
}

/** Decode one packed column `{dtype, data}` of `n` values into an array. */
export function unpackColumn(col, n) {
  const spec = COLUMN_DTYPES[col.dtype];
  if (!spec || !(col.data instanceof Uint8Array)) throw new Error(`bad column ${col.dtype}`);
  const [size, read] = spec;
  if (col.data.byteLength !== n * size) throw new Error(`column of ${col.data.byteLength} bytes for ${n} values`);
  const view = new DataView(col.data.buffer, col.data.byteOffset, col.data.byteLength);
  return Array.from({ length: n }, (_, i) => read(view, i * size));
}

/** Publishes frames; never blocks: a frame the socket cannot take now is dropped and counted. */
export class FramePublisher {
  constructor(address, { queue = 8, keys = null } = {}) {
    this.socket = new zmq.Push({ sendHighWaterMark: queue, immediate: true, linger: 0, sendTimeout: 0 });
    applyKeys(this.socket, keys);
    this.socket.connect(address);
    this.stats = { offered: 0, sent: 0, dropped: 0 };
  }

  /**
   * Send one frame. `pixels`: a typed array (C order, little-endian); `shape`: [rows, columns];
   * `dtype`: one of the protocol's pixel types. Returns true when sent, false when dropped.
   */
  async publish(pixels, { shape, dtype, seq, tAcqNs = process.hrtime.bigint(), ...optional }) {
    this.stats.offered += 1;
    const itemsize = FRAME_DTYPES[dtype];
    if (!itemsize) throw new Error(`dtype ${dtype}: expected one of ${Object.keys(FRAME_DTYPES)}`);
    if (pixels.byteLength !== shape[0] * shape[1] * itemsize) throw new Error("pixels do not match shape and dtype");
    // seq and t_acq_ns are integers on the wire (BigInt keeps 64 bits exact)
    const header = { version: VERSION, seq, t_acq_ns: BigInt(tAcqNs), shape, dtype, ...optional };
    const body = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength);
    try {
      await this.socket.send([encode(header, { useBigInt64: true }), body]);
      this.stats.sent += 1;
      return true;
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      this.stats.dropped += 1;
      return false;
    }
  }

  close() { this.socket.close(); }
}

/** Receives results; `recv(timeoutMs)` gives `{topic, seq, tAcqNs, tPubNs, columns, fields}` or null. */
export class ResultSubscriber {
  constructor(address, { topics = TOPICS, keys = null } = {}) {
    this.socket = new zmq.Subscriber({ linger: 0 });
    applyKeys(this.socket, keys);
    this.socket.connect(address);
    for (const t of topics) this.socket.subscribe(t);
  }

  async recv(timeoutMs = 1000) {
    this.socket.receiveTimeout = timeoutMs;
    let parts;
    try {
      parts = await this.socket.receive();
    } catch (err) {
      if (err.code === "EAGAIN") return null;
      throw err;
    }
    const [topic, body] = parts;
    const m = decode(body, { useBigInt64: true });
    const n = Number(m.n ?? 0);
    const columns = {};
    for (const [k, v] of Object.entries(m.columns ?? {})) columns[k] = unpackColumn(v, n);
    const { version, seq, t_acq_ns, t_pub_ns, n: _n, columns: _c, ...fields } = m;
    return { topic: topic.toString(), seq: Number(seq), tAcqNs: t_acq_ns, tPubNs: t_pub_ns, columns, fields };
  }

  close() { this.socket.close(); }
}

/** Control requests with a timeout; on a timeout the REQ socket is renewed and the request retried. */
export class ControlClient {
  constructor(address, { timeoutMs = 3000, retries = 2, keys = null } = {}) {
    Object.assign(this, { address, timeoutMs, retries, keys });
    this.socket = this._open();
  }

  _open() {
    const s = new zmq.Request({ linger: 0, receiveTimeout: this.timeoutMs, sendTimeout: this.timeoutMs });
    applyKeys(s, this.keys);
    s.connect(this.address);
    return s;
  }

  async request(cmd, args = {}) {
    for (let attempt = 0; attempt <= this.retries; attempt += 1) {
      try {
        await this.socket.send(encode({ cmd, ...args }));
        const [reply] = await this.socket.receive();
        return decode(reply, { useBigInt64: true });
      } catch (err) {
        if (err.code !== "EAGAIN") throw err;
        this.socket.close();  // a REQ socket that timed out cannot send again
        this.socket = this._open();
      }
    }
    throw new Error(`no answer from ${this.address} after ${this.retries + 1} tries`);
  }

  close() { this.socket.close(); }
}
