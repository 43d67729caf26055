// protobuf-es's binary writer with its buffers from node's Buffer pool. Stock, every toBinary
// makes a new BinaryWriter whose buffer starts at 128 bytes and doubles: each is a typed array
// over an ArrayBuffer of its own (V8 keeps only those up to 64 bytes on its heap), and finish()
// copies the bytes into one more. For a 200-byte event that is three backing stores allocated,
// tracked and freed by the garbage collector: half or more of toBinary's CPU (bench/protobuf-writer.ts),
// and toBinary is ~3% of the platform's event loop per tip (every event, every RPC's answer).
// From the pool, a buffer is a slice of an 8 KiB slab (a new slab every few messages), and
// finish() answers a view of the bytes written instead of a copy. What changes for the caller:
// the bytes' ArrayBuffer is the slab (byteOffset is not 0; code that reads .buffer must take
// byteOffset and byteLength, as ours and the libraries' do), and a message kept for long keeps
// its slab. Installed only when the writer is the one this was written against: a probe message
// must encode byte for byte as the stock writer encodes it, else the stock writer stays.
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { StructSchema } from "@bufbuild/protobuf/wkt";

/** The writer's state this relies on (protobuf-es 2.x's BinaryWriter). */
interface WriterState {
  buffer: Uint8Array;
  viewCache: DataView;
  pos: number;
  stackPos: number[];
}

type WriterMethods = Pick<BinaryWriter, "finish"> & { ensureCapacity(size: number): void; view(): DataView };

/** The stock writer's first buffer (as protobuf-es's INITIAL_SIZE). */
const FIRST_BYTES = 128;
const EMPTY = new Uint8Array(0);
const EMPTY_VIEW = new DataView(new ArrayBuffer(0));

const pooled: WriterMethods = {
  ensureCapacity(this: WriterState, size: number): void {
    const required = this.pos + size;
    if (required <= this.buffer.length) return;
    let bytes = this.buffer.length || FIRST_BYTES;
    while (bytes < required) bytes *= 2;
    // Not zeroed: the writer writes every byte before `pos`, and nothing past it is answered.
    const grown = Buffer.allocUnsafe(bytes);
    if (this.pos > 0) grown.set(this.buffer.subarray(0, this.pos));
    this.buffer = grown;
    this.viewCache = EMPTY_VIEW;
  },
  view(this: WriterState): DataView {
    // The cache is empty or over this buffer (ensureCapacity empties it); a pool slice starts
    // inside its slab, so the view is over the slice, not the slab.
    if (this.viewCache.byteLength === this.buffer.byteLength) return this.viewCache;
    return (this.viewCache = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength));
  },
  finish(this: WriterState): Uint8Array<ArrayBuffer> {
    // A view of the bytes written, as a plain Uint8Array as before; the writer lets its buffer go
    // (writing on would overwrite the bytes it answered).
    const result = new Uint8Array(this.buffer.buffer as ArrayBuffer, this.buffer.byteOffset, this.pos);
    this.buffer = EMPTY;
    this.viewCache = EMPTY_VIEW;
    this.pos = 0;
    this.stackPos = [];
    return result;
  },
};

/** A message that takes every path of the writer: growth past the first buffer, a length prefix widened after the fact (join), a double (view). */
function probe(): Uint8Array {
  const long = "x".repeat(300);
  return toBinary(StructSchema, create(StructSchema, { fields: { a: { kind: { case: "stringValue", value: long } }, b: { kind: { case: "numberValue", value: 1.5 } } } }));
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;

/** Whether protobuf-es's writer now takes its buffers from the pool (false: the stock writer, unknown to this). */
export const pooledProtobufWriter: boolean = install();

function install(): boolean {
  const proto = BinaryWriter.prototype as unknown as WriterMethods;
  const stock: WriterMethods = { ensureCapacity: proto.ensureCapacity, view: proto.view, finish: proto.finish };
  const fresh = new BinaryWriter() as unknown as Partial<WriterState>;
  if (typeof stock.ensureCapacity !== "function" || typeof stock.view !== "function" || !(fresh.buffer instanceof Uint8Array) || !(fresh.viewCache instanceof DataView) || fresh.pos !== 0 || !Array.isArray(fresh.stackPos)) return false;
  const expected = probe();
  Object.assign(proto, pooled);
  if (sameBytes(probe(), expected)) return true;
  Object.assign(proto, stock);
  return false;
}
