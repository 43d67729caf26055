// Bytes allocated while some work runs, by V8's sampling heap profiler with the objects
// collected meanwhile counted too: the "bytes per op" the benches here print.
import type { HeapProfiler } from "node:inspector";
import type { Session } from "node:inspector/promises";

/** `work` run under the sampling heap profiler (a sample every `samplingInterval` bytes on average). */
export async function sampleHeap(session: Session, samplingInterval: number, work: () => unknown): Promise<HeapProfiler.SamplingHeapProfile> {
  await session.post("HeapProfiler.startSampling", { samplingInterval, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  await work();
  return (await session.post("HeapProfiler.stopSampling")).profile;
}

/** Bytes the profile saw allocated under `node` (its head: all of them). */
export function sampledBytes(node: HeapProfiler.SamplingHeapProfileNode): number {
  return node.children.reduce((total, child) => total + sampledBytes(child), node.selfSize);
}
