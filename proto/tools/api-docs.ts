// The API reference (Markdown) and the OpenAPI 3.1 document of the Connect
// JSON endpoints, generated from the contracts' descriptors and comments.
// `buf generate` runs it as a local plugin (protoc-gen-ttip-docs.ts, no remote
// plugin); tests load the contracts with `buf build` and compare.
//
//   node --import tsx proto/tools/api-docs.ts --check  fails when proto/docs/ is stale
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  createFileRegistry,
  fromBinary,
  getOption,
  hasOption,
  ScalarType,
  type DescEnum,
  type DescField,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  type FileRegistry,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { getComments } from "@bufbuild/protoplugin";
import { field as validateField, type FieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { stringify } from "yaml";
import { accessOf, type DeclaredAccess } from "@ttip/runtime";
import { event_subject } from "../gen/ttip/common/v1/options_pb.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const DOCS_DIR = path.join(root, "proto/docs");
export const REFERENCE_FILE = path.join(DOCS_DIR, "api-reference.md");
export const OPENAPI_FILE = path.join(DOCS_DIR, "openapi.yaml");

/** The contracts as buf builds them, with their comments. */
export function loadContracts(): FileRegistry {
  const bin = path.join(root, "node_modules", ".bin", "buf");
  const bytes = execFileSync(bin, ["build", "--as-file-descriptor-set", "-o", "-#format=binpb"], { cwd: root, maxBuffer: 64 << 20 });
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
}

/** Our own files (ttip.*), in a stable order. */
function ttipFiles(registry: FileRegistry): DescFile[] {
  return [...registry.files].filter((f) => f.proto.package.startsWith("ttip.")).sort((a, b) => a.name.localeCompare(b.name));
}

/** The services the gateway serves: all but the service-to-service ones. */
export function publicServices(registry: FileRegistry): DescService[] {
  return ttipFiles(registry).flatMap((f) => f.services).filter((s) => !s.typeName.endsWith("InternalService"));
}

const text = (desc: Parameters<typeof getComments>[0]) =>
  (getComments(desc).leading ?? "")
    .split("\n")
    .map((l) => l.replace(/^ /, "").trimEnd())
    .join("\n")
    .trim();

function accessText(a: DeclaredAccess | undefined): string {
  if (!a) return "not declared (refused)";
  const scope = a.partnerScope ? `; partner keys with the scope \`${a.partnerScope}\`` : "";
  switch (a.access) {
    case "anonymous":
      return `anyone${scope}`;
    case "signed_in":
      return `a signed-in token${a.roles?.length ? ` with the role ${a.roles.join(" or ")}` : ""}${a.adminNetwork ? ", from an admin network" : ""}${scope}`;
    case "admin":
      return `the admin console: role ${a.roles.join(" or ")}, from an admin network${a.stepUp ? ", with a device step-up token" : ""}`;
    case "partner":
      return `partner keys only, with the scope \`${a.partnerScope}\``;
    case "internal":
      return "service to service only";
  }
}

// ---- field types and rules ------------------------------------------------

const WKT_JSON: Record<string, object> = {
  "google.protobuf.Timestamp": { type: "string", format: "date-time" },
  "google.protobuf.Duration": { type: "string", pattern: "^-?\\d+(\\.\\d+)?s$" },
  "google.protobuf.Empty": { type: "object" },
  "google.protobuf.Struct": { type: "object" },
  "google.protobuf.Value": {},
  "google.protobuf.FieldMask": { type: "string" },
  "google.protobuf.StringValue": { type: "string" },
  "google.protobuf.BoolValue": { type: "boolean" },
  "google.protobuf.Int32Value": { type: "integer", format: "int32" },
  "google.protobuf.Int64Value": { type: "string", format: "int64" },
};

function scalarSchema(t: ScalarType): object {
  switch (t) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { type: "number" };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      // Protobuf JSON writes 64-bit integers as strings (and reads numbers too).
      return { type: "string", format: "int64", pattern: "^-?\\d+$" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", format: "uint64", pattern: "^\\d+$" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "uint32", minimum: 0 };
    default:
      return { type: "integer", format: "int32" };
  }
}

const ref = (typeName: string) => ({ $ref: `#/components/schemas/${typeName}` });

function messageSchemaRef(m: DescMessage): object {
  return WKT_JSON[m.typeName] ?? ref(m.typeName);
}

function singularSchema(f: DescField): object {
  if (f.fieldKind === "message") return messageSchemaRef(f.message);
  if (f.fieldKind === "enum") return ref(f.enum.typeName);
  if (f.fieldKind === "scalar") return scalarSchema(f.scalar);
  return {};
}

function rulesOf(f: DescField): FieldRules | undefined {
  return hasOption(f, validateField) ? getOption(f, validateField) : undefined;
}

/** JSON Schema keywords and a short text for what buf.validate declares (the common rules; the contract has them all). */
function ruleSchema(rules: FieldRules | undefined): { schema: Record<string, unknown>; notes: string[] } {
  const schema: Record<string, unknown> = {};
  const notes: string[] = [];
  if (!rules) return { schema, notes };
  if (rules.required) notes.push("required");
  const t = rules.type;
  if (t.case === "string") {
    const r = t.value;
    if (r.minLen) (schema.minLength = Number(r.minLen)), notes.push(`at least ${r.minLen} characters`);
    if (r.maxLen) (schema.maxLength = Number(r.maxLen)), notes.push(`at most ${r.maxLen} characters`);
    if (r.pattern) (schema.pattern = r.pattern), notes.push(`matches \`${r.pattern}\``);
    if (r.in.length) (schema.enum = [...r.in]), notes.push(`one of ${r.in.map((v) => `\`${v}\``).join(", ")}`);
    const wk = r.wellKnown;
    if (wk.case === "uuid" && wk.value) (schema.format = "uuid"), notes.push("a UUID");
    if (wk.case === "uri" && wk.value) (schema.format = "uri"), notes.push("an absolute URI");
    if (wk.case === "email" && wk.value) (schema.format = "email"), notes.push("an e-mail address");
  } else if (t.case === "int32" || t.case === "int64" || t.case === "uint32" || t.case === "uint64") {
    const r = t.value as { greaterThan: { case?: string; value?: number | bigint }; lessThan: { case?: string; value?: number | bigint } };
    const num = (v: number | bigint | undefined) => (v === undefined ? undefined : t.case.endsWith("64") ? String(v) : Number(v));
    if (r.greaterThan.case === "gte") (schema[t.case.endsWith("64") ? "x-minimum" : "minimum"] = num(r.greaterThan.value)), notes.push(`≥ ${r.greaterThan.value}`);
    if (r.greaterThan.case === "gt") (schema[t.case.endsWith("64") ? "x-exclusiveMinimum" : "exclusiveMinimum"] = num(r.greaterThan.value)), notes.push(`> ${r.greaterThan.value}`);
    if (r.lessThan.case === "lte") (schema[t.case.endsWith("64") ? "x-maximum" : "maximum"] = num(r.lessThan.value)), notes.push(`≤ ${r.lessThan.value}`);
    if (r.lessThan.case === "lt") (schema[t.case.endsWith("64") ? "x-exclusiveMaximum" : "exclusiveMaximum"] = num(r.lessThan.value)), notes.push(`< ${r.lessThan.value}`);
  } else if (t.case === "enum") {
    if (t.value.definedOnly) notes.push("a defined value");
    if (t.value.notIn.length) notes.push(`not ${t.value.notIn.join(", ")}`);
  } else if (t.case === "repeated") {
    const r = t.value;
    if (r.minItems) (schema.minItems = Number(r.minItems)), notes.push(`at least ${r.minItems} items`);
    if (r.maxItems) (schema.maxItems = Number(r.maxItems)), notes.push(`at most ${r.maxItems} items`);
    if (r.unique) (schema.uniqueItems = true), notes.push("no duplicates");
  } else if (t.case === "bytes") {
    const r = t.value;
    if (r.len) notes.push(`exactly ${r.len} bytes`);
    if (r.maxLen) notes.push(`at most ${r.maxLen} bytes`);
  }
  return { schema, notes };
}

function fieldSchema(f: DescField): Record<string, unknown> {
  const { schema: rules } = ruleSchema(rulesOf(f));
  let s: Record<string, unknown>;
  if (f.fieldKind === "list") {
    const item = f.listKind === "message" ? messageSchemaRef(f.message) : f.listKind === "enum" ? ref(f.enum.typeName) : scalarSchema(f.scalar);
    s = { type: "array", items: item };
    for (const k of ["minItems", "maxItems", "uniqueItems"]) if (k in rules) s[k] = rules[k];
  } else if (f.fieldKind === "map") {
    const value = f.mapKind === "message" ? messageSchemaRef(f.message) : f.mapKind === "enum" ? ref(f.enum.typeName) : scalarSchema(f.scalar);
    s = { type: "object", additionalProperties: value };
  } else {
    const base = singularSchema(f);
    const extra = Object.fromEntries(Object.entries(rules).filter(([k]) => !["minItems", "maxItems", "uniqueItems"].includes(k)));
    s = "$ref" in base && Object.keys(extra).length === 0 ? base : { ...base, ...extra };
  }
  const description = text(f);
  return description ? { ...s, description } : s;
}

function typeLabel(f: DescField): string {
  const name = (kind: string | undefined, d: DescField) =>
    kind === "message" ? `\`${(d as { message: DescMessage }).message.typeName}\`` : kind === "enum" ? `\`${(d as { enum: DescEnum }).enum.typeName}\`` : ScalarType[(d as { scalar: ScalarType }).scalar].toLowerCase();
  if (f.fieldKind === "list") return `repeated ${name(f.listKind, f)}`;
  if (f.fieldKind === "map") return `map<${ScalarType[f.mapKey].toLowerCase()}, ${name(f.mapKind, f)}>`;
  return name(f.fieldKind, f);
}

// ---- what is referenced ---------------------------------------------------

/** Every message and enum reachable from `roots`, by full name. */
function reachable(roots: DescMessage[]): { messages: Map<string, DescMessage>; enums: Map<string, DescEnum> } {
  const messages = new Map<string, DescMessage>();
  const enums = new Map<string, DescEnum>();
  const visit = (m: DescMessage) => {
    if (messages.has(m.typeName) || WKT_JSON[m.typeName]) return;
    messages.set(m.typeName, m);
    for (const f of m.fields) {
      if (f.message) visit(f.message);
      if (f.enum) enums.set(f.enum.typeName, f.enum);
    }
  };
  roots.forEach(visit);
  return { messages, enums };
}

// ---- OpenAPI ---------------------------------------------------------------

function security(a: DeclaredAccess | undefined): object[] {
  const partner = a?.partnerScope ? [{ partnerKeyId: [], partnerTimestamp: [], partnerSignature: [] }] : [];
  if (!a || a.access === "anonymous") return [{}, { bearer: [] }, ...partner];
  if (a.access === "partner") return partner;
  return [{ bearer: [] }, ...partner];
}

export function openApi(registry: FileRegistry): object {
  const services = publicServices(registry);
  const unary = services.flatMap((s) => s.methods.filter((m) => m.methodKind === "unary"));
  const webhookEvent = registry.getMessage("ttip.auth.v1.WebhookEvent");
  const { messages, enums } = reachable([...unary.flatMap((m) => [m.input, m.output]), ...(webhookEvent ? [webhookEvent] : [])]);
  const paths: Record<string, object> = {};
  for (const m of unary) {
    const a = accessOf(m);
    const description = [text(m), `Who may call: ${accessText(a)}.`].filter(Boolean).join("\n\n");
    paths[`/${m.parent.typeName}/${m.name}`] = {
      post: {
        operationId: `${m.parent.typeName}.${m.name}`,
        tags: [m.parent.typeName],
        summary: `${m.parent.name}.${m.name}`,
        description,
        security: security(a),
        ...(a?.partnerScope ? { "x-partner-scope": a.partnerScope } : {}),
        parameters: [{ $ref: "#/components/parameters/ConnectProtocolVersion" }],
        requestBody: { required: true, content: { "application/json": { schema: messageSchemaRef(m.input) } } },
        responses: {
          "200": { description: "Success", content: { "application/json": { schema: messageSchemaRef(m.output) } } },
          default: { description: "A Connect error", content: { "application/json": { schema: ref("connect.error") } } },
        },
      },
    };
  }
  const schemas: Record<string, object> = {
    "connect.error": {
      type: "object",
      description: "Connect's error body. `code` names the gRPC status; `details` carry typed detail (e.g. buf.validate.Violations naming the field).",
      required: ["code"],
      properties: {
        code: {
          type: "string",
          enum: ["canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted",
            "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"],
        },
        message: { type: "string" },
        details: { type: "array", items: { type: "object", properties: { type: { type: "string" }, value: { type: "string", contentEncoding: "base64" }, debug: {} } } },
      },
    },
  };
  for (const [name, msg] of [...messages].sort(([a], [b]) => a.localeCompare(b))) {
    const required = msg.fields.filter((f) => rulesOf(f)?.required).map((f) => f.jsonName);
    const description = text(msg);
    schemas[name] = {
      type: "object",
      ...(description ? { description } : {}),
      properties: Object.fromEntries(msg.fields.map((f) => [f.jsonName, fieldSchema(f)])),
      ...(required.length ? { required } : {}),
      additionalProperties: false,
    };
  }
  for (const [name, e] of [...enums].sort(([a], [b]) => a.localeCompare(b))) {
    const description = text(e);
    schemas[name] = {
      type: "string",
      ...(description ? { description } : {}),
      enum: e.values.map((v) => v.name),
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "TTIP API (Connect JSON)",
      version: "v1",
      description: [
        "Every unary RPC of the public services, as Connect's JSON protocol serves it on the gateway: `POST /<package.Service>/<Method>`",
        "with a JSON body (protobuf JSON: camelCase names, 64-bit integers as strings, enums by name). The same RPCs answer Connect binary,",
        "gRPC and gRPC-web on the same port. Server-streaming RPCs are listed in the API reference; they are not plain JSON requests.",
        "Generated from proto/ by proto/tools/api-docs.ts; do not edit.",
      ].join("\n"),
    },
    servers: [{ url: "http://localhost:8080", description: "`make run` (the gateway's one URL)" }],
    tags: services.map((s) => ({ name: s.typeName, description: text(s) })),
    paths,
    ...(webhookEvent
      ? {
          webhooks: {
            partnerEvent: {
              post: {
                summary: "A partner webhook delivery",
                description: [
                  "Sent to each URL a partner key subscribed (PartnerService.CreateWebhookSubscription) for the event types it chose.",
                  "Verify x-ttip-webhook-signature over the raw body before parsing (the SDKs' webhook verifier), answer 2xx quickly,",
                  "and deduplicate by the signed body's eventId: a delivery is retried with exponential backoff until answered 2xx, and may arrive twice;",
                  "two subscriptions (two URLs) each get the event under their own delivery id. Never deduplicate by a header: headers are not signed.",
                ].join(" "),
                parameters: [
                  {
                    name: "x-ttip-webhook-signature",
                    in: "header",
                    required: true,
                    description: "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" under the subscription's signing secret>",
                    schema: { type: "string", pattern: "^t=\\d+(,v1=[0-9a-f]{64})+$" },
                  },
                  { name: "x-ttip-delivery-id", in: "header", required: true, description: "The same on every attempt and replay of this delivery, for your logs; not signed, and another subscription's copy of the event has its own: deduplicate by the body's eventId.", schema: { type: "string", format: "uuid" } },
                ],
                requestBody: { required: true, content: { "application/json": { schema: ref(webhookEvent.typeName) } } },
                responses: { "2XX": { description: "Received; nothing more is sent for this delivery." }, default: { description: "Not received: retried later." } },
              },
            },
          },
        }
      : {}),
    components: {
      parameters: {
        ConnectProtocolVersion: { name: "connect-protocol-version", in: "header", required: false, schema: { type: "string", enum: ["1"] } },
      },
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "An access token from auth (AuthService.VerifyPin or RefreshSession)." },
        partnerKeyId: { type: "apiKey", in: "header", name: "x-ttip-key-id", description: "The partner key's id." },
        partnerTimestamp: { type: "apiKey", in: "header", name: "x-ttip-timestamp", description: "Unix seconds, within 300 s of the gateway's clock." },
        partnerSignature: {
          type: "apiKey",
          in: "header",
          name: "x-ttip-signature",
          description:
            "Hex HMAC-SHA256, under the key's secret, of METHOD \\n path \\n timestamp \\n hex SHA-256 of the raw body \\n nonce, where the nonce is the x-ttip-nonce header " +
            "(16 to 64 letters, digits, - or _; a fresh UUID per call), spent once. Without x-ttip-nonce, the first four lines only, and identical calls in one second are replays. The SDKs sign for you.",
        },
      },
      schemas,
    },
  };
}

// ---- Markdown reference -----------------------------------------------------

/** A heading's anchor as GitHub makes it: lowercase, punctuation dropped, spaces to hyphens. */
const anchor = (heading: string) => heading.toLowerCase().replace(/[^a-z0-9 _-]/g, "").replace(/ /g, "-");
const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n+/g, " ");

function messageSection(m: DescMessage): string[] {
  const out = [`##### ${m.typeName}`, ""];
  const d = text(m);
  if (d) out.push(d, "");
  const subject = hasOption(m, event_subject) ? getOption(m, event_subject) : "";
  if (subject) out.push(`Published on \`${subject}\`.`, "");
  if (m.fields.length === 0) return [...out, "No fields.", ""];
  out.push("| field | JSON | type | description |", "| --- | --- | --- | --- |");
  for (const f of m.fields) {
    const { notes } = ruleSchema(rulesOf(f));
    const oneof = f.oneof ? `one of \`${f.oneof.name}\`. ` : "";
    out.push(`| ${f.name} | ${f.jsonName} | ${typeLabel(f)} | ${cell(oneof + text(f))}${notes.length ? cell(` (${notes.join("; ")})`) : ""} |`);
  }
  return [...out, ""];
}

function enumSection(e: DescEnum): string[] {
  const out = [`##### ${e.typeName}`, ""];
  const d = text(e);
  if (d) out.push(d, "");
  out.push("| value | number | description |", "| --- | --- | --- |");
  for (const v of e.values) out.push(`| ${v.name} | ${v.number} | ${cell(text(v))} |`);
  return [...out, ""];
}

export function reference(registry: FileRegistry): string {
  const files = ttipFiles(registry);
  const packages = [...new Set(files.map((f) => f.proto.package))];
  const out = [
    "# TTIP API reference",
    "",
    "Generated from `proto/` by `proto/tools/api-docs.ts` (`make generate`); do not edit. Every RPC is served by the gateway as",
    "Connect (JSON or binary), gRPC and gRPC-web at `/<package.Service>/<Method>`; the OpenAPI document of the JSON form is `openapi.yaml`",
    "beside this file. Internal services are listed for completeness: the gateway never serves them.",
    "",
    "## Contents",
    "",
    ...packages.map((p) => `- [${p}](#${anchor(p)})`),
    "",
  ];
  for (const pkg of packages) {
    const inPkg = files.filter((f) => f.proto.package === pkg);
    out.push(`## ${pkg}`, "");
    for (const s of inPkg.flatMap((f) => f.services)) {
      out.push(`### ${s.typeName}`, "");
      const d = text(s);
      if (d) out.push(d, "");
      out.push("| RPC | request → response | who may call | description |", "| --- | --- | --- | --- |");
      for (const m of s.methods) out.push(methodRow(m));
      out.push("");
    }
    const messages = inPkg.flatMap((f) => allMessages(f.messages)).sort((a, b) => a.typeName.localeCompare(b.typeName));
    const enums = inPkg.flatMap((f) => [...f.enums, ...allMessages(f.messages).flatMap((m) => m.nestedEnums)]).sort((a, b) => a.typeName.localeCompare(b.typeName));
    if (messages.length) out.push("#### Messages", "", ...messages.flatMap(messageSection));
    if (enums.length) out.push("#### Enums", "", ...enums.flatMap(enumSection));
  }
  return `${out.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd()}\n`;
}

function allMessages(ms: DescMessage[]): DescMessage[] {
  return ms.flatMap((m) => [m, ...allMessages(m.nestedMessages)]);
}

function methodRow(m: DescMethod): string {
  const stream = m.methodKind === "unary" ? "" : ` (${m.methodKind.replace("_", " ")})`;
  const io = `[${m.input.name}](#${anchor(m.input.typeName)}) → [${m.output.name}](#${anchor(m.output.typeName)})${stream}`;
  let access: string;
  try {
    access = accessText(accessOf(m));
  } catch (err) {
    access = `invalid declaration: ${(err as Error).message}`;
  }
  return `| ${m.name} | ${io} | ${cell(access)} | ${cell(text(m))} |`;
}

// ---- files -----------------------------------------------------------------

/** The files, by their path under proto/docs. */
export function generated(registry = loadContracts()): Map<string, string> {
  const yaml = `# Generated from proto/ by proto/tools/api-docs.ts; do not edit.\n${stringify(openApi(registry), { lineWidth: 0, aliasDuplicateObjects: false })}`;
  return new Map([
    [path.basename(REFERENCE_FILE), reference(registry)],
    [path.basename(OPENAPI_FILE), yaml],
  ]);
}

/** The files that differ from what the contracts generate (empty: up to date). */
export function stale(files = generated()): string[] {
  return [...files].filter(([name, content]) => {
    try {
      return readFileSync(path.join(DOCS_DIR, name), "utf8") !== content;
    } catch {
      return true;
    }
  }).map(([name]) => path.relative(root, path.join(DOCS_DIR, name)));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = generated();
  if (process.argv.includes("--check")) {
    const out = stale(files);
    if (out.length) {
      console.error(`stale, run \`npx buf generate\`: ${out.join(", ")}`);
      process.exit(1);
    }
  } else {
    mkdirSync(DOCS_DIR, { recursive: true });
    for (const [name, content] of files) writeFileSync(path.join(DOCS_DIR, name), content);
  }
}
