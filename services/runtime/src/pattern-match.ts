// Pattern rules' matching (protovalidate's `regexMatch`): JavaScript's RegExp
// when the pattern is in the syntax RE2 and RegExp (u flag) read alike
// (regex-subset.ts), else RE2 as protovalidate does by default.
// validation-patterns.test.ts checks, for every pattern in the contracts, that
// both engines agree on accepting and refusing inputs.
import { RE2JS } from "@bufbuild/re2";
import { parseSubset } from "./regex-subset.js";

/** Test of a text against one compiled pattern. */
type Matcher = (text: string) => boolean;

// Rules' patterns are a fixed set, but CEL's matches() can build one from input:
// the cache starts over past this many, as protovalidate's own does.
const MATCHER_CACHE_LIMIT = 1024;
const matchers = new Map<string, Matcher>();

/** The engine a pattern is matched with: "regexp" inside the shared subset, else "re2". */
export function patternEngine(pattern: string): "regexp" | "re2" {
  return parseSubset(pattern) ? "regexp" : "re2";
}

/** Compiles `pattern` for the engine patternEngine names; throws, as protovalidate does, on any pattern RE2 refuses. */
export function compilePattern(pattern: string): Matcher {
  // RE2 compiles every pattern, even one RegExp will match: RE2 refuses some the subset's
  // syntax takes (nested counts over 1000 together, `(a{500}){500}`), and so must we.
  const re2 = RE2JS.compile(pattern);
  if (patternEngine(pattern) === "regexp") {
    const re = new RegExp(pattern, "u");
    return (text) => re.test(text);
  }
  return (text) => re2.test(text);
}

/** protovalidate's `regexMatch`: RE2's answer for every pattern, from RegExp where it is the same. */
export function patternMatch(pattern: string, text: string): boolean {
  let matcher = matchers.get(pattern);
  if (matcher === undefined) {
    if (matchers.size >= MATCHER_CACHE_LIMIT) matchers.clear();
    matcher = compilePattern(pattern);
    matchers.set(pattern, matcher);
  }
  return matcher(text);
}
