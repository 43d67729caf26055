import assert from "node:assert/strict";
import { test } from "node:test";
import { GroupCommit, GroupCommitFull, groupCommitPer, sortedByKey } from "../src/group-commit.js";

test("a group commit runs items added in one turn together, those added meanwhile in the next group, at most max at once", async () => {
  const groups: number[][] = [];
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const commit = new GroupCommit<number, string>(3, async (items) => {
    groups.push(items);
    if (groups.length === 1) await gate;
    return items.map((i) => `done ${i}`);
  });
  const first = [commit.add(1), commit.add(2)];
  await new Promise((resolve) => setImmediate(resolve));
  // The first group is out: these wait for it, then go together, three at most per group.
  const later = [3, 4, 5, 6].map((i) => commit.add(i));
  release();
  assert.deepEqual(await Promise.all([...first, ...later]), [1, 2, 3, 4, 5, 6].map((i) => `done ${i}`));
  assert.deepEqual(groups, [[1, 2], [3, 4, 5], [6]]);
});

test("a group that fails rejects its own items only", async () => {
  const commit = new GroupCommit<number, number>(2, async (items) => {
    if (items.includes(2)) throw new Error("statement failed");
    return items;
  });
  const outcomes = await Promise.allSettled([1, 2, 3].map((i) => commit.add(i)));
  assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected", "fulfilled"]);
  assert.match(String((outcomes[0] as PromiseRejectedResult).reason), /statement failed/);
});

test("while a group is stuck, items past the waiting bound are refused at once, and room comes back as groups run", async () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const commit = new GroupCommit<number, number>(2, async (items) => {
    await gate;
    return items;
  }, 3);
  const first = [commit.add(1), commit.add(2)];
  await new Promise((resolve) => setImmediate(resolve));
  const waiting = [commit.add(3), commit.add(4), commit.add(5)];
  await assert.rejects(commit.add(6), GroupCommitFull);
  release();
  assert.deepEqual(await Promise.all([...first, ...waiting]), [1, 2, 3, 4, 5]);
  assert.equal(await commit.add(7), 7);
});

test("groupCommitPer makes one group commit per key, on first use", async () => {
  const made: string[] = [];
  const commits = groupCommitPer((key: { name: string }) => {
    made.push(key.name);
    return new GroupCommit<number, string>(4, async (items) => items.map((i) => `${key.name} ${i}`));
  });
  const [a, b] = [{ name: "a" }, { name: "b" }];
  assert.equal(commits(a), commits(a));
  assert.notEqual(commits(a), commits(b));
  assert.deepEqual(await Promise.all([commits(a).add(1), commits(b).add(2)]), ["a 1", "b 2"]);
  assert.deepEqual(made, ["a", "b"]);
});

test("sortedByKey orders a copy by its keys' code units, ties kept in place", () => {
  const items = [{ k: "b", n: 1 }, { k: "B", n: 2 }, { k: "a", n: 3 }, { k: "b", n: 4 }];
  assert.deepEqual(sortedByKey(items, (i) => i.k).map((i) => i.n), [2, 3, 1, 4]);
  assert.deepEqual(items.map((i) => i.n), [1, 2, 3, 4], "the input is left as it was");
});
