/**
 * M-Pesa's limits for consumers, per Safaricom's portal: at least KES 1, at most KES 250,000 a
 * transaction and KES 500,000 a day; whole shillings only. In KES minor units. A file without
 * imports (package export "@ttip/runtime/mpesa-limits"), so the web app, the admin console and the
 * mobile app check what the services check from this one place.
 */
export const MPESA_LIMITS = Object.freeze({
  minMinor: 100n,
  perTransactionMinor: 250_000_00n,
  dailyMinor: 500_000_00n,
});
