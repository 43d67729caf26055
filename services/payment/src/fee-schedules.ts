// Payment's copy of wallet's fee schedules, so that a tip is quoted without a
// call to wallet and a statement per tip. Wallet stays their owner: the copy
// holds every version (future ones too, so an effective_from passing needs no
// reload) and is reloaded from wallet's LoadFeeSchedules on its
// ttip.wallet.fee_schedule_created event and whenever it is older than
// FEE_SCHEDULE_MAX_AGE_MS, in case an event or a notification is lost.
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { type Clock, decodeEvent, type EventBus, isKnownCurrency, type Logger, type Metrics, scheduleInForce, subjectOf } from "@ttip/runtime";
import { FeeScheduleCreatedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { FeeSchedule } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";

/**
 * The longest a copy is used without a reload. It bounds how stale a quote can
 * be when wallet's event (or the notification to the other replicas) is lost:
 * a version that takes effect at once is charged by every replica within this
 * time of its creation; usually within the outbox relay's delay (milliseconds).
 * A version created this far ahead of its effective_from is never missed.
 */
export const FEE_SCHEDULE_MAX_AGE_MS = 60_000;

/** What the replica that consumed the event tells the others (nothing stored: a lost one costs the age bound). */
const RELOAD_SUBJECT = "ttip.payment.fee_schedules_reload";

/** The durable consumer of wallet's event: one replica takes each, then tells the others. */
const CONSUMER = "payment-fee-schedules";

interface Copy {
  schedules: readonly FeeSchedule[];
  /** performance.now() when the load that made it began: the age counts from before wallet answered. */
  loadedAt: number;
}

export class FeeSchedules {
  private readonly copies = new Map<string, Copy>();
  /** The load running per currency and the generation it began in. */
  private readonly loading = new Map<string, { copy: Promise<Copy>; generation: number }>();
  /** Bumped by every reload order: a load begun before it must not stand as fresh. */
  private generation = 0;
  private readonly origin = randomUUID();

  constructor(
    /** Every version of the currency's schedules, from wallet. */
    private readonly load: (currency: string) => Promise<FeeSchedule[]>,
    private readonly clock: Clock,
    private readonly metrics?: Metrics,
    private readonly maxAgeMs = FEE_SCHEDULE_MAX_AGE_MS,
  ) {}

  /** The version in force for `currency` now (the service's clock), from a copy at most maxAgeMs old. */
  async inForce(currency: string): Promise<FeeSchedule> {
    const copy = this.copies.get(currency);
    const fresh = copy && performance.now() - copy.loadedAt <= this.maxAgeMs ? copy : await this.reload(currency);
    return scheduleInForce(fresh.schedules, currency, this.clock.now());
  }

  /** Forgets every copy (the next quote loads again) and reloads those held and `currency`'s; resolves when they are reloaded. */
  async reloadAll(currency?: string): Promise<void> {
    this.generation++;
    const currencies = new Set(this.copies.keys());
    if (currency && isKnownCurrency(currency)) currencies.add(currency);
    this.copies.clear();
    await Promise.all([...currencies].map((c) => this.reload(c)));
  }

  /**
   * One load per currency per generation: a load begun before a reload order
   * is not joined (it may miss the new version), and its copy is used once by
   * those waiting for it, never kept.
   */
  private reload(currency: string): Promise<Copy> {
    const generation = this.generation;
    const running = this.loading.get(currency);
    if (running?.generation === generation) return running.copy;
    const loadedAt = performance.now();
    const loaded = this.load(currency)
      .then((schedules) => {
        const copy = { schedules, loadedAt };
        if (generation === this.generation) {
          this.copies.set(currency, copy);
          const newest = schedules.reduce((v, s) => (s.currency === currency && s.version > v ? s.version : v), 0);
          this.metrics?.gauge("ttip_payment_fee_schedule_version", "The newest fee schedule version in payment's copy, per currency (wallet's is the truth).", ["currency"]).set({ currency }, newest);
        }
        return copy;
      })
      .finally(() => {
        if (this.loading.get(currency)?.copy === loaded) this.loading.delete(currency);
      });
    this.loading.set(currency, { copy: loaded, generation });
    return loaded;
  }

  /**
   * Follows wallet's fee_schedule_created events until stopped: the replica
   * that takes one reloads and tells every other replica to (bus notification).
   * A reload is idempotent by nature (it reads wallet's state), so a
   * redelivered event needs no inbox; a failed one is delivered again.
   */
  async follow(bus: EventBus, logger: Logger): Promise<() => Promise<void>> {
    const listening = bus.listen
      ? await bus.listen(RELOAD_SUBJECT, (data) => {
          const [origin, currency] = Buffer.from(data).toString("utf8").split(" ");
          if (origin === this.origin) return;
          this.reloadAll(currency).catch((err) => logger.warn({ err }, "fee schedules not reloaded; the next quote loads them"));
        })
      : undefined;
    const consuming = await bus.subscribe({
      durable: CONSUMER,
      subject: subjectOf(FeeScheduleCreatedSchema),
      metrics: this.metrics,
      handler: async (message) => {
        // An event that does not decode still says schedules changed: every copy held is reloaded.
        let currency = "";
        try {
          currency = decodeEvent(FeeScheduleCreatedSchema, message).currency;
        } catch (err) {
          logger.warn({ err, eventId: message.id }, "fee_schedule_created event not decoded");
        }
        bus.notify?.(RELOAD_SUBJECT, Buffer.from(`${this.origin} ${currency}`));
        await this.reloadAll(currency);
      },
    });
    return async () => {
      await consuming.stop();
      await listening?.stop();
    };
  }
}
