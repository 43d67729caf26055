// The outside-API client's answer reader: every answer shape however its
// bytes are split, its limits, and random damage (seeded, so a failure
// repeats) that must end in a whole answer or an AnswerError, never anything
// else.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Answer, AnswerError, AnswerReader, MAX_HEAD_BYTES } from "../src/http1-answer.js";

const LIMIT = 4096;

/** Feeds `bytes` in the given pieces, then the close if no answer came; the answer, or the AnswerError's code. */
function read(bytes: Buffer, cuts: number[] = [], headOnly = false): Answer | string {
  const reader = new AnswerReader(LIMIT, headOnly);
  let at = 0;
  try {
    for (const cut of [...cuts, bytes.length]) {
      const answer = reader.push(bytes.subarray(at, cut));
      at = cut;
      if (answer) return answer;
    }
    return reader.closed();
  } catch (err) {
    if (!(err instanceof AnswerError)) throw err;
    return err.code;
  }
}

const simple = (a: Answer | string) => (typeof a === "string" ? a : { status: a.status, text: a.statusText, body: a.body.toString("latin1"), keepAlive: a.keepAlive, headers: Object.fromEntries(a.headers) });

const SHAPES: [string, string][] = [
  ["length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"],
  ["chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\nA;name=v\r\npedia in c\r\n0\r\nx-t: 1\r\n\r\n"],
  ["interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
  ["empty", "HTTP/1.1 204 No Content\r\nx-a: 1\r\nx-a: 2\r\n\r\n"],
  ["close", "HTTP/1.1 200 OK\r\n\r\nto the close"],
  ["http/1.0", "HTTP/1.0 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops"],
  ["http/1.0 kept", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n"],
  ["no reason", "HTTP/1.1 404\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"],
];

/** A small seeded generator (mulberry32): the same damage every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("AnswerReader", () => {
  test("each shape read whole", () => {
    assert.deepEqual(SHAPES.map(([, s]) => simple(read(Buffer.from(s, "latin1")))), [
      { status: 200, text: "OK", body: '{"ok":true}', keepAlive: true, headers: { "content-type": "application/json", "content-length": "11" } },
      { status: 201, text: "Created", body: "Wikipedia in c", keepAlive: true, headers: { "transfer-encoding": "chunked" } },
      { status: 200, text: "OK", body: "ok", keepAlive: true, headers: { "content-length": "2" } },
      { status: 204, text: "No Content", body: "", keepAlive: true, headers: { "x-a": "1, 2" } },
      { status: 200, text: "OK", body: "to the close", keepAlive: false, headers: {} },
      { status: 500, text: "Internal Server Error", body: "oops", keepAlive: false, headers: { "content-length": "4" } },
      { status: 200, text: "OK", body: "", keepAlive: true, headers: { connection: "Keep-Alive", "content-length": "0" } },
      { status: 404, text: "", body: "", keepAlive: false, headers: { "content-length": "0", connection: "close" } },
    ]);
  });

  test("each shape read the same however its bytes are split: byte by byte, and at every single cut", () => {
    for (const [name, s] of SHAPES) {
      const bytes = Buffer.from(s, "latin1");
      const whole = simple(read(bytes));
      assert.deepEqual(simple(read(bytes, Array.from({ length: bytes.length }, (_, i) => i))), whole, `${name} byte by byte`);
      for (let cut = 0; cut <= bytes.length; cut++) assert.deepEqual(simple(read(bytes, [cut])), whole, `${name} cut at ${cut}`);
    }
  });

  test("a HEAD request's answer is its head alone, whatever its length says", () => {
    assert.deepEqual(simple(read(Buffer.from("HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n"), [], true)), { status: 200, text: "OK", body: "", keepAlive: true, headers: { "content-length": "99" } });
  });

  test("cut off anywhere before its end: ECONNRESET (the close is not an answer), save the close-delimited body", () => {
    for (const [name, s] of SHAPES) {
      const bytes = Buffer.from(s, "latin1");
      for (let end = 0; end < bytes.length; end++) {
        const got = read(bytes.subarray(0, end));
        if (name === "close" && end >= s.indexOf("\r\n\r\n") + 4) assert.equal(typeof got, "object", `${name} at ${end}`);
        else assert.equal(got, "ECONNRESET", `${name} cut at ${end}`);
      }
    }
  });

  test("limits: head, header lines, chunk sizes, chunk lines, trailers, bodies of every kind", () => {
    const big = "x".repeat(MAX_HEAD_BYTES);
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\nx-big: ${big}\r\n\r\n`)), "HPE_HEADER_OVERFLOW");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\nx-big: ${big}`)), "HPE_HEADER_OVERFLOW", "refused before its end comes");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\n${"a: b\r\n".repeat(101)}\r\n`)), "HPE_HEADER_OVERFLOW");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${LIMIT + 1}\r\n\r\n`)), "ETOOLARGE", "refused from the head");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n`)), "HPE_INVALID_CONTENT_LENGTH");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffff\r\n`)), "ETOOLARGE");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n100000000\r\n`)), "HPE_INVALID_CHUNK_SIZE", "more than 8 hex digits");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${"800\r\n" + "x".repeat(0x800) + "\r\n"}${"801\r\n" + "x".repeat(0x801) + "\r\n"}0\r\n\r\n`)), "ETOOLARGE", "chunks adding up past the limit");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;${"e".repeat(300)}`)), "HPE_INVALID_CHUNK_SIZE");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n${"t: v\r\n".repeat(MAX_HEAD_BYTES / 6 + 1)}\r\n`)), "HPE_HEADER_OVERFLOW");
    assert.equal(read(Buffer.from(`HTTP/1.1 200 OK\r\n\r\n${"x".repeat(LIMIT + 1)}`)), "ETOOLARGE", "a close-delimited body too");
  });

  test("malformed answers are refused, not guessed at", () => {
    const refused: [string, string][] = [
      ["HTTP/2 200 OK\r\n\r\n", "HPE_INVALID_CONSTANT"],
      ["HTTP/1.1 20 OK\r\n\r\n", "HPE_INVALID_CONSTANT"],
      ["HTTP/1.1 099 X\r\n\r\n", "HPE_INVALID_CONSTANT"],
      ["HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n", "HPE_INVALID_CONSTANT"],
      ["HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"],
      ["HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"],
      ["HTTP/1.1 200 OK\r\nbad name: v\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"],
      ["HTTP/1.1 200 OK\r\na: b\r\n folded\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"],
      ["HTTP/1.1 200 OK\r\na: b\x00c\r\n\r\n", "HPE_INVALID_HEADER_TOKEN"],
      ["HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "HPE_INVALID_CONTENT_LENGTH"],
      ["HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\nx", "HPE_INVALID_CONTENT_LENGTH"],
      ["HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxx", "HPE_INVALID_CONTENT_LENGTH"],
      ["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "HPE_INVALID_CHUNK_SIZE"],
      ["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n", "HPE_STRICT"],
    ];
    for (const [answer, code] of refused) assert.equal(read(Buffer.from(answer, "latin1")), code, JSON.stringify(answer));
  });

  test("what makes a connection unfit for another request: bytes past the answer, a length beside chunked, equal duplicate lengths are fine", () => {
    const keep = (s: string) => (read(Buffer.from(s)) as Answer).keepAlive;
    assert.equal(keep("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA"), false);
    assert.equal(keep("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), false);
    assert.equal(keep("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok"), true);
    assert.equal(keep("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nraw"), false, "not chunked: read to the close");
  });

  test("random damage (5,000 damaged answers, random splits): a whole answer within the limit or an AnswerError, nothing else", () => {
    const next = random(20);
    const counts = { answers: 0, refused: 0 };
    for (let i = 0; i < 5_000; i++) {
      const bytes = Buffer.from(SHAPES[Math.floor(next() * SHAPES.length)][1], "latin1");
      const damaged = Buffer.from(bytes);
      for (let k = 1 + Math.floor(next() * 3); k > 0; k--) {
        const at = Math.floor(next() * damaged.length);
        damaged[at] = next() < 0.5 ? Math.floor(next() * 256) : "\r\n:;0 9aF"[Math.floor(next() * 9)].charCodeAt(0);
      }
      const cuts = [Math.floor(next() * damaged.length), Math.floor(next() * damaged.length)].sort((a, b) => a - b);
      const got = read(damaged, cuts); // anything but an AnswerError throws here and fails the test
      if (typeof got === "string") counts.refused++;
      else {
        counts.answers++;
        assert.ok(got.body.length <= LIMIT && got.status >= 200 && got.status <= 999);
      }
    }
    assert.ok(counts.answers > 250 && counts.refused > 250, JSON.stringify(counts));
  });
});
