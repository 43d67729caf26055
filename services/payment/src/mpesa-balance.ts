// The M-Pesa short code's balance (Daraja Account Balance) beside the ledger.
// The query is asynchronous: the request is accepted, the balances arrive at
// the ResultURL in the Result envelope as one string of
// "Account|Currency|Current|Available|Reserved|Uncleared" joined by "&".
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type HandlerContext } from "@connectrpc/connect";
import { callerHeaders, DependencyUnavailableError, NotConfiguredError, NotFoundError, optionalTimestamp, type Queryable, requireCaller, type Role } from "@ttip/runtime";
import { GetMpesaBalanceResponseSchema, type GetMpesaBalanceResponse } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { callbackUrl, newCallbackToken } from "./callback-paths.js";
import type { ParsedResult } from "./callbacks.js";
import { mpesaCallbackBase } from "./config.js";
import { DarajaError } from "./daraja/client.js";
import { walletDidNotAnswer } from "./ledger.js";
import { kes } from "./money.js";
import type { Deps } from "./tips.js";

interface ParsedAccount {
  name: string;
  currency: string;
  current: string;
  available: string;
  reserved: string;
  uncleared: string;
}

/** Amounts as M-Pesa writes them ("700000.00") in minor units; undefined for anything else. */
function minorOf(text: string): bigint | undefined {
  const m = /^(-?)(\d{1,15})(?:\.(\d{1,2}))?$/.exec(text.trim());
  if (!m) return undefined;
  const minor = BigInt(m[2]) * 100n + BigInt((m[3] ?? "0").padEnd(2, "0"));
  return m[1] ? -minor : minor;
}

/** The AccountBalance string, account by account; undefined when any part is not what Daraja sends. */
export function parseAccountBalance(value: unknown): ParsedAccount[] | undefined {
  if (typeof value !== "string" || value.length > 4000) return undefined;
  const accounts: ParsedAccount[] = [];
  for (const part of value.split("&").filter(Boolean)) {
    const [name, currency, current, available, reserved, uncleared] = part.split("|");
    if (!name || !/^[A-Z]{3}$/.test(currency ?? "")) return undefined;
    if ([current, available, reserved, uncleared].some((v) => v === undefined || minorOf(v) === undefined)) return undefined;
    accounts.push({ name: name.trim(), currency, current: String(minorOf(current)), available: String(minorOf(available)), reserved: String(minorOf(reserved)), uncleared: String(minorOf(uncleared)) });
  }
  return accounts.length ? accounts : undefined;
}

/** Stores the answer for the check the token names (the first answer wins); false when no check has it. */
export async function applyBalanceResult(db: Queryable, token: string, result: ParsedResult, queueTimeout: boolean): Promise<boolean> {
  const accounts = queueTimeout ? [] : (parseAccountBalance(result.parameters.get("AccountBalance")) ?? []);
  const { rowCount } = await db.query(
    `UPDATE payment.mpesa_balance_checks SET answered_at = now(), result_code = $2, result_desc = $3, accounts = $4::jsonb
      WHERE callback_token = $1 AND answered_at IS NULL`,
    [token, queueTimeout ? "queue_timeout" : result.resultCode, result.resultDesc, JSON.stringify(accounts)],
  );
  if (rowCount) return true;
  return !!(await db.query("SELECT 1 FROM payment.mpesa_balance_checks WHERE callback_token = $1", [token])).rowCount;
}

export async function checkMpesaBalance(deps: Deps, ctx: HandlerContext): Promise<string> {
  const caller = requireCaller(ctx);
  const base = mpesaCallbackBase(deps.config());
  if (!base) throw new NotConfiguredError("M-Pesa is not configured on this deployment");
  const checkId = randomUUID();
  const token = newCallbackToken();
  await deps.ctx.pool.query("INSERT INTO payment.mpesa_balance_checks (check_id, callback_token, requested_by) VALUES ($1, $2, $3)", [checkId, token, caller.subject]);
  try {
    const r = await deps.daraja().accountBalance({
      resultUrl: callbackUrl(base, "balance/result", token),
      queueTimeoutUrl: callbackUrl(base, "balance/timeout", token),
      remarks: "admin balance check",
    });
    await deps.ctx.pool.query("UPDATE payment.mpesa_balance_checks SET conversation_id = $2 WHERE check_id = $1", [checkId, r.ConversationID]);
  } catch (err) {
    const why = err instanceof DarajaError || err instanceof Error ? err.message : String(err);
    await deps.ctx.pool.query("UPDATE payment.mpesa_balance_checks SET answered_at = now(), result_code = 'not_sent', result_desc = $2 WHERE check_id = $1", [checkId, why.slice(0, 300)]);
    throw new DependencyUnavailableError(`M-Pesa did not take the balance query: ${why}`);
  }
  return checkId;
}

/**
 * How long wallet has to answer each read of a balance check (one short read there): past it the
 * admin is answered UNAVAILABLE naming the call, to ask again, rather than kept waiting for as long as wallet is stuck.
 */
const LEDGER_READ_TIMEOUT_MS = 5_000;

/** KES balances of the platform accounts of one kind, read from the wallet as the asking admin. */
async function ledgerBalance(deps: Deps, kind: AccountKind, headers: Record<string, string>): Promise<bigint> {
  const wallet = createClient(WalletAdminService, deps.ctx.peers("wallet"));
  const options = { headers, timeoutMs: LEDGER_READ_TIMEOUT_MS };
  const { accounts } = await wallet.listAccounts({ kind, page: { pageSize: 100 } }, options).catch(walletDidNotAnswer("ListAccounts", LEDGER_READ_TIMEOUT_MS));
  let total = 0n;
  for (const a of accounts.filter((x) => x.currency === "KES")) {
    const { balance } = await wallet.getAccount({ accountId: a.accountId }, options).catch(walletDidNotAnswer("GetAccount", LEDGER_READ_TIMEOUT_MS));
    total += balance?.ledger?.amountMinor ?? 0n;
  }
  return total;
}

export async function getMpesaBalance(deps: Deps, ctx: HandlerContext, checkId: string): Promise<GetMpesaBalanceResponse> {
  const caller = requireCaller(ctx);
  const { rows } = await deps.ctx.pool.query(
    checkId ? "SELECT * FROM payment.mpesa_balance_checks WHERE check_id = $1" : "SELECT * FROM payment.mpesa_balance_checks ORDER BY requested_at DESC LIMIT 1",
    checkId ? [checkId] : [],
  );
  const row = rows[0];
  if (!row) throw new NotFoundError(checkId ? "check_id: no such balance check" : "no balance check yet: call CheckMpesaBalance");
  const accounts = (row.accounts as ParsedAccount[]).filter((a) => a.currency === "KES");
  const reported = accounts.reduce((sum, a) => sum + BigInt(a.current), 0n);
  const headers = callerHeaders(caller.subject, ...(caller.roles as Role[]));
  // Receipts post -charged to M-Pesa clearing; B2C posts +amount (and its charge) to payout clearing.
  const net = -(await ledgerBalance(deps, AccountKind.MPESA_CLEARING, headers)) - (await ledgerBalance(deps, AccountKind.PAYOUT_CLEARING, headers));
  const answered = !!row.answered_at && accounts.length > 0;
  return create(GetMpesaBalanceResponseSchema, {
    checkId: row.check_id,
    requestedAt: timestampFromDate(row.requested_at),
    answeredAt: optionalTimestamp(row.answered_at),
    resultCode: row.result_code,
    resultDesc: row.result_desc,
    accounts: accounts.map((a) => ({
      name: a.name,
      current: kes(BigInt(a.current)),
      available: kes(BigInt(a.available)),
      reserved: kes(BigInt(a.reserved)),
      uncleared: kes(BigInt(a.uncleared)),
    })),
    reported: answered ? kes(reported) : undefined,
    ledgerNet: kes(net),
    difference: answered ? kes(reported - net) : undefined,
  });
}
