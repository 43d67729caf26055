// The part of RE2's syntax where JavaScript's RegExp (with the u flag) means
// the same thing, parsed into a tree. protovalidate's `string.pattern` rules
// are RE2 by contract; matching them with RE2's JavaScript port costs about
// 20 times what RegExp does, so a pattern inside this subset is matched with
// RegExp and anything else stays on RE2 (validation.ts).
//
// What is left out, and why it differs:
// - `.`: RE2 refuses only "\n"; RegExp also "\r", U+2028 and U+2029.
// - `\s`, `\w`, `\b`, `\p{..}`, POSIX classes `[[:alpha:]]`: different sets, or not RegExp syntax.
// - flags `(?i)`, named groups, lookaround, backreferences: not both engines' syntax.
// - a literal `{`, `]` or `}` outside a class, a quantifier on an anchor or on another
//   quantifier: RE2 takes some, RegExp with u refuses them or reads them otherwise.
// - repetition counts over 1000: RE2 refuses the pattern, RegExp does not. Nested counts
//   over 1000 together (`(a{500}){500}`) parse here, so pattern-match.ts has RE2 compile
//   every pattern first and refuse what it refuses.
// - non-ASCII characters written in the pattern: kept out to keep the subset small.
// Anchors `^` and `$` without the m flag mean the start and end of the text in both
// (`$` is not "before a final newline" in either), and with u both count code points.

/** A set of code points: inclusive ranges, or everything outside them. */
export interface CharSet {
  kind: "set";
  negated: boolean;
  ranges: [number, number][];
}
export type Atom = { kind: "start" } | { kind: "end" } | CharSet | { kind: "group"; alternatives: Sequence[] };
/** An atom repeated min..max times (max Infinity: unbounded). */
export interface Piece {
  atom: Atom;
  min: number;
  max: number;
}
export type Sequence = Piece[];

/** RE2's largest repetition count; it refuses a pattern with a larger one. */
const MAX_REPEAT = 1000;
/** Nesting of groups: real patterns use one or two; the bound keeps the recursion shallow. */
const MAX_DEPTH = 32;
/** Characters with a meaning outside a class, escapable in both engines (u flag). */
const SYNTAX = new Set("^$\\.*+?()[]{}|/");

class Unsupported extends Error {}

/** The pattern's tree when the whole pattern is in the subset, else undefined. */
export function parseSubset(pattern: string): Sequence[] | undefined {
  try {
    const parser = new Parser(pattern);
    const tree = parser.alternatives(0);
    if (!parser.atEnd()) return undefined;
    return tree;
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
}

class Parser {
  private at = 0;
  constructor(private readonly src: string) {}

  atEnd(): boolean {
    return this.at === this.src.length;
  }

  alternatives(depth: number): Sequence[] {
    if (depth > MAX_DEPTH) throw new Unsupported();
    const list = [this.sequence(depth)];
    while (this.peek() === "|") {
      this.at++;
      list.push(this.sequence(depth));
    }
    return list;
  }

  private sequence(depth: number): Sequence {
    const pieces: Piece[] = [];
    for (let c = this.peek(); c !== undefined && c !== "|" && c !== ")"; c = this.peek()) {
      const atom = this.atom(depth);
      const [min, max] = this.quantifier();
      if ((atom.kind === "start" || atom.kind === "end") && (min !== 1 || max !== 1)) throw new Unsupported();
      pieces.push({ atom, min, max });
    }
    return pieces;
  }

  private atom(depth: number): Atom {
    const c = this.next();
    switch (c) {
      case "^":
        return { kind: "start" };
      case "$":
        return { kind: "end" };
      case "(":
        return this.group(depth);
      case "[":
        return this.charClass();
      case "\\":
        return this.escapeOutsideClass();
      default:
        if (!isPlainLiteral(c) || "{}]*+?.".includes(c)) throw new Unsupported();
        return single(c.charCodeAt(0));
    }
  }

  private group(depth: number): Atom {
    if (this.peek() === "?") {
      if (this.src.slice(this.at, this.at + 2) !== "?:") throw new Unsupported();
      this.at += 2;
    }
    const alternatives = this.alternatives(depth + 1);
    if (this.next() !== ")") throw new Unsupported();
    return { kind: "group", alternatives };
  }

  private escapeOutsideClass(): CharSet {
    const c = this.next();
    if (c === "x") return single(this.hexByte());
    if (c === "d") return { kind: "set", negated: false, ranges: [[0x30, 0x39]] };
    if (SYNTAX.has(c)) return single(c.charCodeAt(0));
    throw new Unsupported();
  }

  /** `[...]` after its `[`: literals, `\xHH` and escaped punctuation, ranges; `-` only first or last. */
  private charClass(): CharSet {
    const negated = this.peek() === "^";
    if (negated) this.at++;
    const ranges: [number, number][] = [];
    for (let first = true; this.peek() !== "]"; first = false) {
      if (this.peek() === "-" && (first || this.src[this.at + 1] === "]")) {
        this.at++;
        ranges.push([0x2d, 0x2d]);
        continue;
      }
      const lo = this.classChar();
      if (this.peek() === "-" && this.src[this.at + 1] !== "]") {
        this.at++;
        const hi = this.classChar();
        if (hi < lo) throw new Unsupported();
        ranges.push([lo, hi]);
      } else ranges.push([lo, lo]);
    }
    this.at++;
    if (!ranges.length) throw new Unsupported();
    return { kind: "set", negated, ranges };
  }

  private classChar(): number {
    const c = this.next();
    if (c === "\\") {
      const e = this.next();
      if (e === "x") return this.hexByte();
      if (SYNTAX.has(e) || e === "-") return e.charCodeAt(0);
      throw new Unsupported();
    }
    // "[" could open a POSIX class in RE2; "-" in the middle is a range's.
    if (!isPlainLiteral(c) || c === "[" || c === "-") throw new Unsupported();
    return c.charCodeAt(0);
  }

  private hexByte(): number {
    const hex = this.src.slice(this.at, this.at + 2);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Unsupported();
    this.at += 2;
    return parseInt(hex, 16);
  }

  /** `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` (lazy or not: a test for a match cannot tell); none: once. */
  private quantifier(): [number, number] {
    const c = this.peek();
    let bounds: [number, number];
    if (c === "*") bounds = [0, Infinity];
    else if (c === "+") bounds = [1, Infinity];
    else if (c === "?") bounds = [0, 1];
    else if (c === "{") return this.counted();
    else return [1, 1];
    this.at++;
    this.lazySuffix();
    return bounds;
  }

  private counted(): [number, number] {
    const m = /^\{(\d{1,4})(,(\d{0,4}))?\}/.exec(this.src.slice(this.at));
    if (!m) throw new Unsupported();
    this.at += m[0].length;
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
    if (min > MAX_REPEAT || (max !== Infinity && (max > MAX_REPEAT || max < min))) throw new Unsupported();
    this.lazySuffix();
    return [min, max];
  }

  private lazySuffix(): void {
    if (this.peek() === "?") this.at++;
    const after = this.peek();
    if (after === "*" || after === "+" || after === "?" || after === "{") throw new Unsupported();
  }

  private peek(): string | undefined {
    return this.src[this.at];
  }

  private next(): string {
    if (this.at >= this.src.length) throw new Unsupported();
    return this.src[this.at++];
  }
}

/** Printable ASCII, which both engines read alike as a literal where it has no other meaning. */
function isPlainLiteral(c: string): boolean {
  const code = c.charCodeAt(0);
  return c.length === 1 && code >= 0x20 && code <= 0x7e && c !== "\\";
}

function single(code: number): CharSet {
  return { kind: "set", negated: false, ranges: [[code, code]] };
}
