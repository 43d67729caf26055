/**
 * M-Pesa's limits for consumers, per Safaricom's portal: at least KES 1, at most KES 250,000 a
 * transaction and KES 500,000 a day; whole shillings only. In KES minor units. A file without
 * imports (package export "@ttip/runtime/mpesa-limits"), so the web app, the admin console and the
 * mobile app check what the services check from this one place.
 */
export const MPESA_LIMITS = Object.freeze({
  minMinor: 100n,
  /**
   * The least a payout (B2C) may pay: KES 10. Safaricom's portal pages, as our Daraja notes record them, confirm a
   * KES 1 minimum without naming the API, and B2C result code 2 is "below minimum" without saying which; payout
   * providers on M-Pesa state KES 10. Unsettled, so the safe side: a payout M-Pesa may refuse is never held and sent.
   */
  payoutMinMinor: 10_00n,
  perTransactionMinor: 250_000_00n,
  dailyMinor: 500_000_00n,
});

/**
 * The most a held payout's resolution may book to the platform's fees account (paid on M-Pesa's statement
 * minus the payout's amount, either way) without the admin confirming that difference: KES 50. A digit typed
 * too many (9600 for 96) makes a difference of at least 9 times the payout, KES 90 or more for the smallest
 * payout sent (KES 10), so it is always over; what slips through unconfirmed is at most KES 50, a small loss
 * next to the KES 9,504 of that typo. One place, so the console asks exactly when the service would refuse.
 */
export const HELD_PAYOUT_CONFIRM_DIFFERENCE_ABOVE_MINOR = 50_00n;
