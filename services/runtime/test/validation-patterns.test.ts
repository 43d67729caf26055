// Every `pattern` rule in the contracts, found in their descriptors, matched
// by JavaScript's RegExp as the runtime's validator does, must accept and
// refuse exactly what RE2 does (protovalidate's contract). And the runtime's
// validator must refuse every contract message exactly as protovalidate's
// default one does: same fields, rule ids and messages.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { create, getOption, isFieldSet, toJson, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { reflect } from "@bufbuild/protobuf/reflect";
import { createValidator, violationsToProto, type Validator } from "@bufbuild/protovalidate";
import { BytesRulesSchema, field as fieldRulesExt, Ignore, StringRulesSchema, message as messageRulesExt, ViolationsSchema, type FieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { RE2JS } from "@bufbuild/re2";
import { parseSubset, type Sequence } from "../src/regex-subset.js";
import { contractMessages, filesUnder, POOL, protoRoot, random, sample } from "./fixtures/contracts.js";
import { patternEngine, patternMatch, requestValidator } from "../src/index.js";

interface PatternRule {
  message: DescMessage;
  field: DescField;
  /** Where in FieldRules the pattern sits: the field itself, its list items, or its map keys or values. */
  place: "field" | "items" | "keys" | "values";
  pattern: string;
}

/** The string and bytes patterns in one FieldRules, with where each applies. */
function patternsIn(rules: FieldRules | undefined, place: PatternRule["place"]): { place: PatternRule["place"]; pattern: string }[] {
  if (!rules) return [];
  const t = rules.type;
  switch (t.case) {
    case "string":
      return isFieldSet(t.value, StringRulesSchema.field.pattern) ? [{ place, pattern: t.value.pattern }] : [];
    case "bytes":
      return isFieldSet(t.value, BytesRulesSchema.field.pattern) ? [{ place, pattern: t.value.pattern }] : [];
    case "repeated":
      return patternsIn(t.value.items, "items");
    case "map":
      return [...patternsIn(t.value.keys, "keys"), ...patternsIn(t.value.values, "values")];
    default:
      return [];
  }
}

/** CEL expressions of a message and its fields (their matches() calls are patterns too). */
function celExpressionsOf(message: DescMessage): string[] {
  const own = getOption(message, messageRulesExt);
  const fromFields = message.fields.flatMap((f) => getOption(f, fieldRulesExt).cel);
  return [...own.cel, ...fromFields].map((r) => r.expression).concat(own.celExpression);
}

const messages = await contractMessages();
const rules: PatternRule[] = messages.flatMap((message) =>
  message.fields.flatMap((field) => patternsIn(getOption(field, fieldRulesExt), "field").map((p) => ({ message, field, ...p }))),
);
const patterns = [...new Set(rules.map((r) => r.pattern))];

const GENERIC = ["", "\n", "\r\n", " ", "a", "A", "0", "+", "_", "-", "KES", "kes", "KES\n", "\nKES", "KE", "KESS", "sw", "en", "\u{1F600}", "\ud800", "a\u2028b"];

/** Each class's edges: its ranges' ends and the code points either side of them. */
function edgesOf(alternatives: Sequence[]): number[] {
  return alternatives.flatMap((seq) =>
    seq.flatMap(({ atom }) =>
      atom.kind === "set" ? atom.ranges.flatMap(([lo, hi]) => [lo - 1, lo, hi, hi + 1]).filter((cp) => cp >= 0) : atom.kind === "group" ? edgesOf(atom.alternatives) : [],
    ),
  );
}

/** Texts a pattern should accept, and near misses: a character dropped, added, replaced, a newline either side. */
function corpusFor(pattern: string, tree: Sequence[]): string[] {
  const rnd = random([...pattern].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261));
  const chars = [...POOL, ...edgesOf(tree)].map((cp) => String.fromCodePoint(cp));
  const pick = () => chars[Math.floor(rnd() * chars.length)];
  const out = new Set(GENERIC);
  for (let i = 0; i < 300; i++) {
    const s = sample(tree, rnd);
    const cps = [...s];
    const at = Math.floor(rnd() * (cps.length + 1));
    out.add(s);
    out.add(s + "\n").add("\n" + s).add(s + "\r\n").add(s + s);
    out.add([...cps.slice(0, at), pick(), ...cps.slice(at)].join(""));
    if (cps.length) {
      const j = Math.floor(rnd() * cps.length);
      out.add([...cps.slice(0, j), ...cps.slice(j + 1)].join(""));
      out.add([...cps.slice(0, j), pick(), ...cps.slice(j + 1)].join(""));
      out.add(s + cps[cps.length - 1]);
    }
  }
  return [...out];
}

/** Where RE2 and RegExp (u flag) part on `pattern` over `texts`, or undefined when they agree on all. */
function disagreement(pattern: string, texts: string[]): string | undefined {
  let re2: RE2JS, re: RegExp;
  try {
    re2 = RE2JS.compile(pattern);
  } catch (err) {
    return `RE2 refuses it: ${(err as Error).message}`;
  }
  try {
    re = new RegExp(pattern, "u");
  } catch (err) {
    return `RegExp refuses it: ${(err as Error).message}`;
  }
  const differs = texts.find((t) => re2.test(t) !== re.test(t));
  return differs === undefined ? undefined : `they part on ${JSON.stringify(differs)}: RE2 ${re2.test(differs)}, RegExp ${re.test(differs)}`;
}

describe("pattern rules: RegExp as RE2", () => {
  test("the descriptors' patterns are the ones written in the .proto files", () => {
    // A second way of finding them, so a rule the descriptor walk missed (a new place a
    // pattern can sit) fails here instead of going unchecked below.
    const written = new Set<string>();
    for (const path of filesUnder(join(protoRoot, "ttip"), ".proto")) {
      for (const m of readFileSync(path, "utf8").matchAll(/pattern\s*[:=]\s*"((?:[^"\\]|\\.)*)"/g)) written.add(JSON.parse(`"${m[1]}"`));
    }
    assert.ok(written.size >= 10, `only ${written.size} patterns found in the .proto files`);
    assert.deepEqual([...written].filter((p) => !patterns.includes(p)), []);
    assert.ok(rules.length >= 50, `only ${rules.length} pattern rules found in the descriptors`);
  });

  test("no CEL expression calls matches() (its patterns would need the same check)", () => {
    assert.deepEqual(messages.flatMap(celExpressionsOf).filter((e) => e.includes("matches(")), []);
  });

  for (const pattern of patterns) {
    test(`${pattern}: in the shared syntax, and RegExp accepts and refuses what RE2 does`, () => {
      const tree = parseSubset(pattern);
      assert.ok(tree, `${pattern} is outside the syntax both engines read alike: it is matched with RE2 (slower), and needs this check extended before RegExp may take it`);
      assert.equal(patternEngine(pattern), "regexp");
      const texts = corpusFor(pattern, tree);
      assert.equal(disagreement(pattern, texts), undefined);
      const re2 = RE2JS.compile(pattern);
      const accepted = texts.filter((t) => re2.test(t));
      assert.ok(accepted.length >= 1 && accepted.length < texts.length, `${accepted.length} of ${texts.length} accepted: the corpus must hold both`);
      for (const t of texts) assert.equal(patternMatch(pattern, t), re2.test(t), JSON.stringify(t));
    });
  }

  test("a pattern whose syntax differs between the engines is left to RE2, and would fail the check above", () => {
    const differing = ["^.$", "^\\s$", "(?i)^k$", "^[[:alpha:]]$", "^\\pL$", "^\\PL$", "^a{1001}$", "^\\x{41}$", "^a\\z", "^[a-z]{2}\\b", "^(?P<x>a)$", "^\\Qa.b\\E$", "^é$"];
    const texts = [...GENERIC, ...POOL.map((cp) => String.fromCodePoint(cp)), "k", "\u212a", "a", "aa", "a.b", "é", "e\u0301"];
    for (const p of differing) {
      assert.equal(parseSubset(p), undefined, p);
      assert.equal(patternEngine(p), "re2", p);
    }
    // Each of these parts the engines on the texts (or one refuses it), so admitting it would fail.
    for (const p of ["^.$", "^\\s$", "(?i)^k$", "^[[:alpha:]]$", "^\\pL$", "^a{1001}$", "^\\x{41}$", "^a\\z", "^(?P<x>a)$", "^\\Qa.b\\E$"]) {
      assert.notEqual(disagreement(p, texts), undefined, p);
    }
  });

  test("a pattern RE2 refuses is still refused (the validator reports a compilation error)", () => {
    assert.throws(() => patternMatch("^(a$", "a"));
  });
});

/** A message of `rule`'s type with its patterned field (or one item, key or value of it) set to `text`. */
function messageWith(rule: PatternRule, text: string) {
  const msg = reflect(rule.message, create(rule.message));
  const value = rule.field.fieldKind === "scalar" && rule.field.scalar === 12 /* bytes */ ? new TextEncoder().encode(text) : text;
  if (rule.field.fieldKind === "list") msg.get(rule.field).add(value);
  else if (rule.field.fieldKind === "map" && rule.place === "keys") return undefined;
  else if (rule.field.fieldKind === "map") return undefined;
  else msg.set(rule.field, value as never);
  return msg.message;
}

const violations = (v: Validator, msg: ReturnType<typeof messageWith> & object, schema: DescMessage) => {
  const r = v.validate(schema, msg);
  if (r.kind === "valid") return [];
  if (r.kind === "error") return [`error: ${r.error.message}`];
  return toJson(ViolationsSchema, violationsToProto(r.violations)[0]);
};

describe("the runtime's validator refuses as protovalidate's default one does", () => {
  const reference = createValidator();
  for (const rule of rules) {
    test(`${rule.message.typeName}.${rule.field.name} (${rule.place}) ${rule.pattern}`, () => {
      const tree = parseSubset(rule.pattern);
      assert.ok(tree);
      const re2 = RE2JS.compile(rule.pattern);
      let refused = 0;
      // A message's strings are well-formed UTF-16 (protobuf-es refuses a lone surrogate).
      for (const text of corpusFor(rule.pattern, tree).filter((t) => !/\p{Cs}/u.test(t)).slice(0, 120)) {
        const msg = messageWith(rule, text);
        if (!msg) return;
        const ours = violations(requestValidator(), msg, rule.message);
        assert.deepEqual(ours, violations(reference, msg, rule.message), JSON.stringify(text));
        if (!re2.test(text) && (text !== "" || !isIgnoredWhenEmpty(rule.field))) {
          refused++;
          assert.match(JSON.stringify(ours), /"ruleId":"string\.pattern"|"ruleId":"bytes\.pattern"/, `${JSON.stringify(text)} was not refused by the pattern`);
        }
      }
      assert.ok(refused > 0);
    });
  }
});

/** An empty value skips the field's rules when it is ignored when zero, or is a oneof member left unset. */
function isIgnoredWhenEmpty(field: DescField): boolean {
  return getOption(field, fieldRulesExt).ignore === Ignore.IF_ZERO_VALUE || field.oneof !== undefined;
}
