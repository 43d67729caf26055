import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

export const HELM_VERSION = "v3.16.3";

/** helm from PATH or Go's bin folder; `make test` installs it with `go install` (services/runtime/src/testing/install-test-tools.sh). */
export function helmBinary(): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) if (dir && existsSync(path.join(dir, "helm"))) return path.join(dir, "helm");
  let gopath = "";
  try {
    gopath = execFileSync("go", ["env", "GOPATH"]).toString().trim();
  } catch {
    // no Go either
  }
  const fromGo = path.join(gopath, "bin", "helm");
  if (gopath && existsSync(fromGo)) return fromGo;
  throw new Error(`helm not found: install it with \`go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}\``);
}
