import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  FieldPathElementSchema,
  FieldPathSchema,
  ViolationSchema,
  ViolationsSchema,
  type Violation,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

/** One thing wrong with one field of a request: `field` is its path as in the contract ("page.page_token", "postings[2].amount"). */
export interface FieldProblem {
  field: string;
  message: string;
  /** A stable id for clients to branch on, protovalidate's style ("string.pattern"); "invalid" when none fits. */
  ruleId?: string;
}

const SEGMENT = /^([a-z_][a-z0-9_]*)(?:\[(\d+)\])?$/;

/** "postings[2].amount" as protovalidate's field path: names, with list indexes as subscripts. */
export function fieldPath(field: string) {
  const elements = field.split(".").flatMap((segment) => {
    const m = SEGMENT.exec(segment);
    if (!m) return [create(FieldPathElementSchema, { fieldName: segment })];
    const subscript = m[2] === undefined ? undefined : { case: "index" as const, value: BigInt(m[2]) };
    return [create(FieldPathElementSchema, { fieldName: m[1], subscript })];
  });
  return create(FieldPathSchema, { elements });
}

function violation(p: FieldProblem): Violation {
  return create(ViolationSchema, { field: fieldPath(p.field), ruleId: p.ruleId ?? "invalid", message: p.message });
}

/**
 * INVALID_ARGUMENT for a client's mistake, naming each field: the message reads "field: why" (as
 * protovalidate's own errors do) and the details carry buf.validate.Violations for programs.
 */
export function fieldErrors(problems: readonly FieldProblem[]): ConnectError {
  if (problems.length === 0) throw new RangeError("fieldErrors needs at least one problem");
  const message = problems.map((p) => `${p.field}: ${p.message}`).join("; ");
  const details = [{ desc: ViolationsSchema, value: create(ViolationsSchema, { violations: problems.map(violation) }) }];
  return new ConnectError(message, Code.InvalidArgument, undefined, details);
}

/**
 * INVALID_ARGUMENT with this exact message (already "field: why" or "field.sub: why"),
 * its violation naming `field`: a peer's refusal of a value this call passed on.
 */
export function fieldErrorAsSaid(field: string, message: string): ConnectError {
  const details = [{ desc: ViolationsSchema, value: create(ViolationsSchema, { violations: [violation({ field, message })] }) }];
  return new ConnectError(message, Code.InvalidArgument, undefined, details);
}

/** The one-field case of fieldErrors: `throw fieldError("amount", "must be positive")`. */
export function fieldError(field: string, message: string, ruleId?: string): ConnectError {
  return fieldErrors([{ field, message, ruleId }]);
}

/** The violations an error carries (empty when none): what a client reads instead of parsing the message. */
export function violationsOf(err: ConnectError): FieldProblem[] {
  return err.findDetails(ViolationsSchema).flatMap((v) =>
    v.violations.map((x) => ({
      field: (x.field?.elements ?? [])
        .map((e) => (e.subscript.case === "index" ? `${e.fieldName}[${e.subscript.value}]` : e.fieldName))
        .join("."),
      message: x.message,
      ruleId: x.ruleId,
    })),
  );
}
