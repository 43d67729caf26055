import { create, type MessageShape } from "@bufbuild/protobuf";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import {
  NotificationInternalService,
  type SendNotificationRequest,
  SendNotificationRequestSchema,
  type SendNotificationResponse,
  SendNotificationResultSchema,
} from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { batchRefusal, claimIdempotencyKey, clockOf, fieldError, type IdempotentRequest, IdempotencyConflictError, idempotencyRace, normalisePhone, repeatingRefusalOf, requestFingerprint, requestValidator, withTransaction } from "@ttip/runtime";
import { type Dispatcher, enqueueClaiming, enqueueMany, type Recipient, type SendRequest } from "../delivery.js";
import { upsertContact } from "../stores/recipients.js";
import { MissingVariablesError } from "../templates.js";
import type { NotificationHandlerContext } from "./context.js";

/**
 * Sends claimed by the statement that writes them (a one-channel SMS or e-mail, due now) go
 * to the dispatcher at once, not through the bus; without one (not started yet) each is
 * left to the bus as any other.
 */
type Sender = () => Dispatcher | undefined;

/** What the other services ask of notification: send a message, keep a user's contact details. */
export function internalHandlers(h: NotificationHandlerContext, sender: Sender = () => undefined): Partial<ServiceImpl<typeof NotificationInternalService>> {
  return {
    sendNotification: (req) => sendOne(h, sender, req, idempotentSend(req)).catch(asFieldError),
    sendNotifications: sendNotificationsHandler(h, sender),
    upsertContact: upsertContactHandler(h),
  };
}

/**
 * The requests' deliveries written with their keys' claims in one statement, which also records
 * the dispatcher's sends accepted meanwhile (no statement of their own); those it claimed for
 * sending, sent. A refusal that would come again (a bad value) may be the carried records' (a
 * provider's message id, say), not the call's: the statement is written again without them (the
 * first wrote nothing), and they are recorded alone (see Dispatcher.recordRefused).
 */
async function enqueueAndSend(h: NotificationHandlerContext, sender: Sender, sends: SendRequest[]): Promise<({ ids: string[] } | { error: unknown })[]> {
  const dispatcher = sender();
  const writeWith = async (records: ReturnType<Dispatcher["takeSentRecords"]>) => {
    try {
      const { made, claimed } = await enqueueClaiming(h.pool, sends, new Date(clockOf(h).now()), dispatcher?.firstProviders(), records?.carried);
      if (claimed.length) dispatcher!.sendClaimed(claimed);
      return made;
    } finally {
      void records?.settle();
    }
  };
  const writeOnce = async () => {
    const records = dispatcher?.takeSentRecords();
    try {
      return await writeWith(records);
    } catch (err) {
      if (!records || !repeatingRefusalOf(err)) throw err;
      return writeWith(undefined);
    }
  };
  // A key a concurrent call claimed and committed meanwhile (idempotencyRace: nothing was written):
  // run again once, the statement finds it used and the call is answered as a repeat.
  const write = () => writeOnce().catch((err: unknown) => (idempotencyRace(err, "notification") ? writeOnce() : Promise.reject(err)));
  // Taken and held in the same tick: a stop that comes after finds the call in the dispatcher's drain.
  return dispatcher ? dispatcher.claiming(write) : write();
}

/**
 * The key's claim, as SendNotification makes it whether it is called alone or in a batch: one
 * key space, so a message sent by either is found again by the other (a rolling upgrade).
 */
const SEND_OPERATION = `${NotificationInternalService.typeName}/${NotificationInternalService.method.sendNotification.name}`;

function idempotentSend(req: SendNotificationRequest): IdempotentRequest {
  return { schema: "notification", operation: SEND_OPERATION, caller: "", key: req.idempotencyKey, fingerprint: requestFingerprint(SendNotificationRequestSchema, req) };
}

/** What the request asks for, or INVALID_ARGUMENT naming the field. */
function sendRequestOf(req: SendNotificationRequest): Omit<SendRequest, "claim"> {
  let to: Recipient;
  if (req.recipient.case === "userId") to = { userId: req.recipient.value };
  else if (req.recipient.case === "phone") to = { phone: req.recipient.value };
  else if (req.recipient.case === "email") to = { email: req.recipient.value };
  else throw fieldError("recipient", "one of user_id, phone or email is required");
  if (req.templateKey === TemplateKey.OTP && req.recipient.case === "email") throw fieldError("email", "sign-in codes go by SMS only");
  return { sourceKey: `rpc:${req.idempotencyKey}`, to, templateKey: req.templateKey, variables: req.variables, locale: req.locale, channels: req.channels };
}

/**
 * To a number or an address (a receipt, a sign-in code): one delivery whatever the channels
 * asked (a number is texted, an address mailed), whose statement claims the key itself.
 */
const claimsInItsStatement = (req: SendNotificationRequest) => req.recipient.case === "phone" || req.recipient.case === "email";

/** A template's missing variables as the client's mistake naming the field; any other error as it is. */
function asClientError(err: unknown): unknown {
  return err instanceof MissingVariablesError ? fieldError("variables", `missing ${err.missing.join(", ")}`) : err;
}

function asFieldError(err: unknown): never {
  throw asClientError(err);
}

async function sendOne(h: NotificationHandlerContext, sender: Sender, req: SendNotificationRequest, idempotent: IdempotentRequest): Promise<{ deliveryIds: string[] }> {
  const send = sendRequestOf(req);
  if (claimsInItsStatement(req)) {
    // Without a transaction around it.
    const [made] = await enqueueAndSend(h, sender, [{ ...send, claim: idempotent }]);
    if ("error" in made) throw made.error;
    if (made.ids.length) return { deliveryIds: made.ids };
    // The key was used before: below, the claim says whether by this request, and finds its delivery.
  }
  const ids = await withTransaction(h.pool, async (tx) => {
    // The key's deliveries are found again by their source key; the claim refuses another request under it.
    // A retry answers them, not a new plan by the user's settings of now (an e-mail address added since would get one).
    if (await claimIdempotencyKey(tx, idempotent, send.sourceKey)) {
      const { rows } = await tx.query<{ id: string }>("SELECT id::text FROM notification.deliveries WHERE source_key = $1 ORDER BY channel", [send.sourceKey]);
      return rows.map((r) => r.id);
    }
    return (await enqueueMany(tx, [send], new Date(clockOf(h).now())))[0];
  });
  return { deliveryIds: ids };
}

type SendResult = MessageShape<typeof SendNotificationResultSchema>;

/**
 * Each request answered as SendNotification would answer it alone, in the batch's order.
 * The one-channel ones (receipts) are written with their keys' claims in one statement; a
 * key used before is looked up in one more (only then); the others go one by one. A key
 * given again in the batch: the same message gets the first's answer; another is sent
 * after the first (a round of its own), as it would be called after it.
 */
function sendNotificationsHandler(h: NotificationHandlerContext, sender: Sender): ServiceImpl<typeof NotificationInternalService>["sendNotifications"] {
  return async function (batch) {
    const { requests } = batch;
    const results: SendResult[] = new Array(requests.length);
    const idempotent = requests.map(idempotentSend);
    /** Answered so far, by key: each message's fingerprint and answer. */
    const answered = new Map<string, number[]>();
    // A malformed request is refused in its own result; the others go on.
    let pending = requests.flatMap((req, i) => {
      const malformed = violationOf(req);
      if (malformed) results[i] = malformed;
      return malformed ? [] : [i];
    });
    while (pending.length) {
      const round: number[] = [];
      const later: number[] = [];
      for (const i of pending) (round.some((j) => requests[j].idempotencyKey === requests[i].idempotencyKey) ? later : round).push(i);
      await sendTogether(h, sender, round.filter((i) => claimsInItsStatement(requests[i])), requests, idempotent, results);
      for (const i of round.filter((i) => !claimsInItsStatement(requests[i]))) results[i] = await sendOne(h, sender, requests[i], idempotent[i]).then(sent, (err) => refused(h, err));
      for (const i of round) answered.set(requests[i].idempotencyKey, [...(answered.get(requests[i].idempotencyKey) ?? []), i]);
      pending = [];
      for (const i of later) {
        const same = answered.get(requests[i].idempotencyKey)?.find((j) => idempotent[j].fingerprint === idempotent[i].fingerprint && results[j].code === 0);
        if (same !== undefined) results[i] = results[same];
        else pending.push(i);
      }
    }
    return { results };
  };
}

/**
 * The contract leaves a batch's requests to the service (their rules are not checked on the
 * batch as a whole): each is checked here against SendNotificationRequest's own rules, as a
 * call of SendNotification would be.
 */
const validator = requestValidator();

/** The request's refusal when it breaks its contract's rules (INVALID_ARGUMENT naming the field), else undefined. */
function violationOf(req: SendNotificationRequest): SendResult | undefined {
  const checked = validator.validate(SendNotificationRequestSchema, req);
  if (checked.kind === "valid") return undefined;
  return create(SendNotificationResultSchema, { code: Code.InvalidArgument, message: checked.error.message });
}

const sent = (r: SendNotificationResponse | { deliveryIds: string[] }): SendResult => create(SendNotificationResultSchema, { deliveryIds: r.deliveryIds });

/** A request's refusal as its result (the runtime's batchRefusal), a template's missing variables as the client's mistake. */
function refused(h: NotificationHandlerContext, err: unknown): SendResult {
  return create(SendNotificationResultSchema, batchRefusal(asClientError(err), h.logger, "a batched notification failed"));
}

/** The one-channel requests at `indexes`: written with their claims in one statement; a key used before looked up in one more. */
async function sendTogether(h: NotificationHandlerContext, sender: Sender, indexes: number[], requests: SendNotificationRequest[], idempotent: IdempotentRequest[], results: SendResult[]): Promise<void> {
  const valid: number[] = [];
  const sends: SendRequest[] = [];
  for (const i of indexes) {
    try {
      sends.push({ ...sendRequestOf(requests[i]), claim: idempotent[i] });
      valid.push(i);
    } catch (err) {
      results[i] = refused(h, err);
    }
  }
  if (!sends.length) return;
  const made = await enqueueAndSend(h, sender, sends);
  const usedBefore: number[] = [];
  made.forEach((m, j) => {
    const i = valid[j];
    if ("error" in m) results[i] = refused(h, m.error);
    else if (m.ids.length) results[i] = sent({ deliveryIds: m.ids });
    else usedBefore.push(i);
  });
  if (!usedBefore.length) return;
  const earlier = await earlierSends(h, usedBefore.map((i) => idempotent[i]));
  for (const i of usedBefore) {
    const first = earlier.get(idempotent[i].key);
    if (!first) results[i] = create(SendNotificationResultSchema, { code: Code.Aborted, message: "idempotency_key: claimed meanwhile; try again" });
    else if (first.fingerprint !== null && first.fingerprint !== idempotent[i].fingerprint) results[i] = refused(h, new IdempotencyConflictError(idempotent[i].key, SEND_OPERATION));
    else results[i] = sent({ deliveryIds: first.delivery_ids });
  }
}

/** Who claimed these keys before (their fingerprints) and the deliveries made under each, in one statement. */
async function earlierSends(h: NotificationHandlerContext, claims: IdempotentRequest[]): Promise<Map<string, { fingerprint: string | null; delivery_ids: string[] }>> {
  const { rows } = await h.pool.query<{ key: string; fingerprint: string | null; delivery_ids: string[] }>(
    `SELECT r.key, r.fingerprint, COALESCE(array_agg(d.id::text ORDER BY d.channel) FILTER (WHERE d.id IS NOT NULL), '{}') AS delivery_ids
       FROM notification.idempotent_requests r LEFT JOIN notification.deliveries d ON d.source_key = r.result_id
      WHERE r.operation = $1 AND r.caller = '' AND r.key = ANY($2::text[])
      GROUP BY r.key, r.fingerprint`,
    [SEND_OPERATION, claims.map((c) => c.key)],
  );
  return new Map(rows.map((r) => [r.key, r]));
}

function upsertContactHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationInternalService>["upsertContact"] {
  const { pool } = h;
  return async function (req) {
    const locale = req.locale === "sw" || req.locale === "en" ? req.locale : "";
    await upsertContact(pool, { userId: req.userId, phone: normalisePhone(req.phone), email: req.email, locale });
    return {};
  };
}
