import { execFile, execFileSync, type ExecFileOptions } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

export const HELM_VERSION = "v3.16.3";

export const KUBE_SCORE_VERSION = "v1.20.0";

/**
 * The environment of the Go programs the chart tests run (helm, kube-score, promtool, the control
 * plane): their garbage collector runs at a quarter of its default rate. Their heaps are small and
 * their lives short, and collecting was a good part of their CPU on two shared cores (promtool's
 * alert tests: 7.7 s of CPU with the default, 5.4 s with this; peak memory 64 → 114 MB).
 */
export const GO_ENV: NodeJS.ProcessEnv = { ...process.env, GOGC: "400" };

const execFileAsync = promisify(execFile);

/** execFile, promised, for a Go program: GO_ENV unless `options` names another environment. */
export function execGo(file: string, args: string[], options: ExecFileOptions = {}): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(file, args, { env: GO_ENV, ...options, encoding: "utf8" });
}

/** helm from PATH or Go's bin folder; `make test` installs it with `go install` (services/runtime/src/testing/install-test-tools.sh). */
export function helmBinary(): string {
  return goTool("helm", `go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}`);
}

/** kube-score, installed the same way. */
export function kubeScoreBinary(): string {
  return goTool("kube-score", `go install github.com/zegl/kube-score/cmd/kube-score@${KUBE_SCORE_VERSION}`);
}

function goTool(name: string, install: string): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  let gopath = "";
  try {
    gopath = execFileSync("go", ["env", "GOPATH"]).toString().trim();
  } catch {
    // no Go either
  }
  const fromGo = path.join(gopath, "bin", name);
  if (gopath && existsSync(fromGo)) return fromGo;
  throw new Error(`${name} not found: install it with \`${install}\``);
}
