import { timestampDate } from "@bufbuild/protobuf/wkt";
import { create, type MessageShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, batchRefusal, decodePageToken, fieldError, keysetPage, type Logger, NotFoundError, pageSize, positionParts } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { PostEntryResultSchema, WalletAdminService, WalletInternalService, type PostEntryRequest } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { ENSURE_ACCOUNT_LOCK_TIMEOUT_MS, ensureAccount, entriesUnderKeys, type EntryInput, getAccount, loadEntry, postEntry, reverseEntry, toAccount } from "../ledger.js";
import { type BatchOutcome, postEntries } from "../post-entries.js";
import { toBalance, trialBalance } from "../queries.js";
import { accountsPage } from "../stores/accounts.js";
import type { WalletAreaHandlers, WalletHandlerContext } from "./context.js";

/** The ledger: accounts and journal entries, posted by the other services and read or reversed by admins. */
export function ledgerHandlers(h: WalletHandlerContext): WalletAreaHandlers {
  return {
    admin: {
      getTrialBalance: getTrialBalanceHandler(h),
      getAccount: getAccountHandler(h),
      listAccounts: listAccountsHandler(h),
      getJournalEntry: getJournalEntryHandler(h),
      listJournalEntries: listJournalEntriesHandler(h),
      reverseEntry: reverseEntryHandler(h),
    },
    internal: {
      ensureAccount: ensureAccountHandler(h),
      postEntry: postEntryHandler(h),
      postEntries: postEntriesHandler(h),
    },
  };
}

function getTrialBalanceHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["getTrialBalance"] {
  const { pool } = h;
  return async function (req) {
    return trialBalance(pool, req.asOf ? timestampDate(req.asOf) : undefined);
  };
}

function getAccountHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["getAccount"] {
  const { pool } = h;
  return async function (req) {
    const account = await getAccount(pool, req.accountId);
    if (!account) throw new NotFoundError(`account_id: no account ${req.accountId}`);
    return { account: toAccount(account), balance: toBalance(account) };
  };
}

function listAccountsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["listAccounts"] {
  const { pool } = h;
  return async function (req) {
    const size = pageSize(req.page);
    const after = decodePageToken(req.page?.pageToken, ([id, ...rest]) => (rest.length ? undefined : positionParts.uuid(id))) ?? "";
    const rows = await accountsPage(pool, req.kind, req.ownerId, after, size + 1);
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.account_id]);
    return {
      accounts: items.map(toAccount),
      page: { nextPageToken },
    };
  };
}

function getJournalEntryHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["getJournalEntry"] {
  const { pool } = h;
  return async function (req) {
    const entry = await loadEntry(pool, req.entryId);
    if (!entry) throw new NotFoundError(`entry_id: no entry ${req.entryId}`);
    return { entry };
  };
}

function listJournalEntriesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["listJournalEntries"] {
  const { pool } = h;
  return async function (req) {
    return { entries: await entriesUnderKeys(pool, req.idempotencyKeys) };
  };
}

function reverseEntryHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["reverseEntry"] {
  const { tx } = h;
  return async function (req, hctx) {
    const { entry } = await tx(async (db) => {
      const r = await reverseEntry(db, req.entryId, req.idempotencyKey, req.reason);
      if (r.created) {
        await auditAdminAction(db, "wallet", hctx, { action: AuditAction.LEDGER_ENTRY_REVERSED, target: `entry:${req.entryId}`, detail: `by ${r.entry.entryId}: ${req.reason}` });
      }
      return r;
    });
    return { reversal: entry };
  };
}

function ensureAccountHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["ensureAccount"] {
  const { pool } = h;
  return async function (req) {
    // Alone (autocommit), so its lock wait can be bounded without bounding a transaction's.
    const row = await ensureAccount(pool, req.kind, req.ownerKind, req.ownerId, req.currency, ENSURE_ACCOUNT_LOCK_TIMEOUT_MS);
    return { account: toAccount(row), balance: toBalance(row) };
  };
}

function postEntryHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["postEntry"] {
  // One statement, its own transaction: no BEGIN/COMMIT around it (ledger.ts).
  const { pool } = h;
  return async function (req) {
    // On the pool: the statement is its own transaction.
    return postEntry(pool, entryInputOf(req), "alone");
  };
}

/** The request as the ledger takes it; INVALID_ARGUMENT naming the field for a posting without an amount. */
function entryInputOf(req: PostEntryRequest): EntryInput {
  return {
    idempotencyKey: req.idempotencyKey,
    cause: req.cause!,
    postings: req.postings.map((p, i) => {
      if (!p.amount) throw fieldError(`postings[${i}].amount`, `required`);
      return { accountId: p.accountId, amountMinor: p.amount.amountMinor, currency: p.amount.currency, memo: p.memo };
    }),
    conversions: req.conversions,
    description: req.description,
    allowOwnerDebt: req.allowOwnerDebt,
  };
}

type EntryResult = MessageShape<typeof PostEntryResultSchema>;

/** Each entry answered as PostEntry would answer it alone, in order; most batches in one statement (post-entries.ts). */
function postEntriesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["postEntries"] {
  const { pool, logger } = h;
  return async function (req) {
    const inputs: (EntryInput | Error)[] = req.entries.map((e) => {
      try {
        return entryInputOf(e);
      } catch (err) {
        return err as Error;
      }
    });
    const wellFormed = inputs.filter((e): e is EntryInput => !(e instanceof Error));
    const outcomes = wellFormed.length ? await postEntries(pool, wellFormed) : [];
    let next = 0;
    const results = inputs.map((e) => (e instanceof Error ? refusedEntry(logger, e) : resultOf(logger, outcomes[next++])));
    return { results };
  };
}

function resultOf(logger: Logger, outcome: BatchOutcome): EntryResult {
  return "posted" in outcome ? create(PostEntryResultSchema, { entry: outcome.posted.entry }) : refusedEntry(logger, outcome.refused);
}

/** An entry's refusal as its result (the runtime's batchRefusal). */
function refusedEntry(logger: Logger, err: unknown): EntryResult {
  return create(PostEntryResultSchema, batchRefusal(err, logger, "a batched journal entry failed"));
}
