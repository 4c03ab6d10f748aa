// Send the frames of a folder to a service and write the detections it returns.
//   node examples/compare.mjs FOLDER FRAMES RESULTS CONTROL OUT.json
// FOLDER holds frames.json ({shape, dtype, count}) and frame-K.bin (raw pixels).
// Used by livetrack's CI to check this client against the Python one.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ControlClient, FramePublisher, ResultSubscriber } from "../src/livetrack.mjs";

const [folder, frames, results, control, out] = process.argv.slice(2);
const meta = JSON.parse(readFileSync(join(folder, "frames.json"), "utf8"));
const ctl = new ControlClient(control);
const sub = new ResultSubscriber(results, { topics: ["det"] });
const pub = new FramePublisher(frames, { queue: 1000 });
const typed = { uint16: Uint16Array, uint8: Uint8Array, float32: Float32Array };
const load = (k) => {
  const raw = readFileSync(join(folder, `frame-${k}.bin`));
  return new typed[meta.dtype](raw.buffer, raw.byteOffset, raw.byteLength / typed[meta.dtype].BYTES_PER_ELEMENT);
};

async function resultOf(seq, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const r = await sub.recv(Math.max(1, end - Date.now()));
    if (r && r.seq === seq) return r;
  }
  return null;
}

try {
  const reset = await ctl.request("reset_tracks");  // the stream may start at any seq
  if (!reset.ok) throw new Error(`reset_tracks: ${JSON.stringify(reset)}`);
  // a subscriber joins late: warm-up frames until one's result comes back
  let seq = 1000;
  for (;;) {
    await pub.publish(load(0), { shape: meta.shape, dtype: meta.dtype, seq });
    if (await resultOf(seq, 500)) break;
    if (++seq > 1030) throw new Error("no result for 30 warm-up frames");
  }
  const detections = {};
  for (let k = 0; k < meta.count; k += 1) {
    seq += 1;
    await pub.publish(load(k), { shape: meta.shape, dtype: meta.dtype, seq, pixel_size_um: 0.065 });
    const r = await resultOf(seq, 10000);
    if (!r) throw new Error(`no detections for frame ${k}`);
    detections[k] = { x: r.columns.x, y: r.columns.y, photons: r.columns.photons };
  }
  const stats = await ctl.request("stats");
  writeFileSync(out, JSON.stringify({ detections, publisher: pub.stats, processed: Number(stats.status.processed) }));
} finally {
  pub.close(); sub.close(); ctl.close();
}
