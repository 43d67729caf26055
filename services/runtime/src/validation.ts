// Request validation (protovalidate): one validator per process, shared by
// every server's interceptor and by handlers that check items of a batch
// themselves, so each message type is planned once. Its `string.pattern` and
// `bytes.pattern` rules are matched by pattern-match.ts (RegExp where it
// answers as RE2). A message the quick check (validity-check.ts) finds keeping
// every rule is answered valid without protovalidate's walk; any other is
// protovalidate's to judge, so every refusal is protovalidate's own.
import { createValidator, type Validator, type Violation } from "@bufbuild/protovalidate";
import type { Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { patternMatch } from "./pattern-match.js";
import { validityCheck } from "./validity-check.js";

let shared: Validator | undefined;

/** The process's request validator (created on first use). */
export function requestValidator(): Validator {
  return (shared ??= quickFirst(createValidator({ regexMatch: patternMatch })));
}

/** `full`, asked only about messages the quick check is not sure of. */
function quickFirst(full: Validator): Validator {
  return {
    validate(schema, message) {
      if (message.$typeName === schema.typeName && validityCheck(schema)(message)) return { kind: "valid", message, error: undefined, violations: undefined } as never;
      return full.validate(schema, message);
    },
  };
}

/** Refuses a request that breaks its contract's rules: INVALID_ARGUMENT with buf.validate.Violations. */
export function validateInterceptor(): Interceptor {
  return createValidateInterceptor({ validator: namingEachField(requestValidator()) });
}

/** At most this many violations are spelled out in a refusal's message (all are in its details). */
const NAMED_VIOLATIONS = 8;

/**
 * `full`, whose refusals name every field broken (up to NAMED_VIOLATIONS), not the first
 * "and 1 more violation": a caller fixes them all in one round, without reading the details.
 */
function namingEachField(full: Validator): Validator {
  return {
    validate(schema, message) {
      const result = full.validate(schema, message);
      if (result.kind === "invalid" && result.violations.length > 1) result.error.message = violationsMessage(result.violations);
      return result;
    },
  };
}

/** "a: … [rule]; b: … [rule]", then "; and N more" past NAMED_VIOLATIONS. */
function violationsMessage(violations: readonly Violation[]): string {
  const named = violations.slice(0, NAMED_VIOLATIONS).map(String).join("; ");
  const rest = violations.length - NAMED_VIOLATIONS;
  return rest > 0 ? `${named}; and ${rest} more` : named;
}
