import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { money, NotFoundError, pageSize, requireCaller } from "@ttip/runtime";
import { StatementFormat, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { TransactionKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { withdrawalLimits } from "../holds.js";
import { decodeHistoryToken, listTransactions, statement, statementCsv, toBalance } from "../queries.js";
import { workerWallets } from "../stores/accounts.js";
import { type WalletAreaHandlers, type WalletHandlerContext } from "./context.js";

/** A worker's own wallets: balances, history, monthly statements and what they may still withdraw. */
export function walletHandlers(h: WalletHandlerContext): WalletAreaHandlers {
  return {
    public: {
      getBalance: getBalanceHandler(h),
      listTransactions: listTransactionsHandler(h),
      getStatement: getStatementHandler(h),
      getWithdrawalLimits: getWithdrawalLimitsHandler(h),
    },
  };
}

function getBalanceHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["getBalance"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    return { balances: (await workerWallets(pool, caller.subject, req.currency)).map(toBalance) };
  };
}

function listTransactionsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["listTransactions"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    const wallets = await workerWallets(pool, caller.subject, req.currency);
    const { transactions, next } = await listTransactions(pool, {
      accountIds: wallets.map((w) => w.account_id),
      kinds: req.kinds as TransactionKind[],
      from: req.from ? timestampDate(req.from) : undefined,
      to: req.to ? timestampDate(req.to) : undefined,
      pageSize: pageSize(req.page),
      cursor: decodeHistoryToken(req.page?.pageToken),
    });
    return { transactions, page: { nextPageToken: next } };
  };
}

function getStatementHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["getStatement"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    const [account] = await workerWallets(pool, caller.subject, req.currency);
    if (!account) throw new NotFoundError(`currency: you have no ${req.currency} wallet`);
    const s = await statement(pool, account, req.year, req.month);
    return {
      openingBalance: money(s.opening, req.currency),
      closingBalance: money(s.closing, req.currency),
      rows: s.rows,
      csv: req.format === StatementFormat.CSV ? new TextEncoder().encode(statementCsv(s, req.currency)) : new Uint8Array(),
    };
  };
}

function getWithdrawalLimitsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["getWithdrawalLimits"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    // A read: the wallet is looked up, not created.
    const [account] = await workerWallets(pool, caller.subject, req.currency);
    return withdrawalLimits(pool, account ?? { owner_id: caller.subject, currency: req.currency });
  };
}
