// A server stream's one request message handed to its handler, as a stream served over Connect
// (connect-stream.ts) and the gateway's forwarded stream (raw-stream.ts) hand it over, against the
// yardstick in the same process: connect's createAsyncIterable (its generators compiled for older
// engines) and messagesOf, each read as the handler's side reads it (the message, then its end).
// Prints CPU nanoseconds per stream and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/stream-request-messages.ts [streams per round=200000] [rounds=6]
import { create } from "@bufbuild/protobuf";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { WatchTipRequestSchema } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { messagesOf } from "@ttip/runtime";
import { compareRounds, type Round } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 6);
const message = create(WatchTipRequestSchema, { tipId: "0190c2a4-7e1f-7a8b-9c0d-112233445566" });

/** `streams` request iterables made and read: the one message, then the end. */
const readEach = (make: (items: unknown[]) => AsyncIterable<unknown>): Round => async (streams) => {
  let read = 0;
  for (let i = 0; i < streams; i++) {
    const it = make([message])[Symbol.asyncIterator]();
    if (!(await it.next()).done) read++;
    if (!(await it.next()).done) throw new Error("one message expected");
  }
  if (read !== streams) throw new Error("a stream without its message");
  return read;
};

await compareRounds([["createAsyncIterable (before)", readEach(createAsyncIterable)], ["messagesOf", readEach(messagesOf)]], perRound, rounds, "stream");
