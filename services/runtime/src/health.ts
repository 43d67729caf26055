import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListResponseSchema,
} from "@ttip/proto/grpc/health/v1/health_pb.js";

export { ServingStatus };

/**
 * grpc.health.v1 as every stock client and Kubernetes' gRPC probe expect it:
 * "" is the whole server, other names are fully-qualified service names.
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  private readonly watchers = new Set<() => void>();
  private closed = false;

  constructor(private readonly remote?: (service: string) => Promise<ServingStatus | undefined>) {}

  set(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const wake of this.watchers) wake();
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** On shutdown every service reports NOT_SERVING so balancers drain this pod first. */
  shutdown(): void {
    this.closed = true;
    for (const name of this.statuses.keys()) this.set(name, ServingStatus.NOT_SERVING);
  }

  register(router: ConnectRouter): void {
    router.service(Health, {
      check: async (req) => {
        const local = this.get(req.service);
        // A stopping process answers NOT_SERVING for everything it fronts.
        const status = local ?? (this.closed ? ServingStatus.NOT_SERVING : await this.remote?.(req.service));
        if (status === undefined) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
        return { status };
      },
      list: () =>
        create(HealthListResponseSchema, {
          statuses: Object.fromEntries(
            [...this.statuses].map(([name, status]) => [name, create(HealthCheckResponseSchema, { status })]),
          ),
        }),
      watch: (req, ctx) => this.watch(req.service, ctx),
    });
  }

  private async *watch(service: string, ctx: HandlerContext) {
    let last: ServingStatus | undefined;
    while (!ctx.signal.aborted) {
      const status = this.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (status !== last) {
        last = status;
        yield { status };
      }
      // After the final NOT_SERVING, end the stream so draining is not held up.
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.watchers.delete(wake);
          ctx.signal.removeEventListener("abort", wake);
          resolve();
        };
        this.watchers.add(wake);
        ctx.signal.addEventListener("abort", wake);
      });
    }
  }
}
