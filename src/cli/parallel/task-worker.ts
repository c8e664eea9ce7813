/**
 * Worker-thread entry of the task pool (worker-pool.ts): runs each task it
 * is sent with runTask and posts the result, or the error with the fields
 * the CLI's error report needs (name, first line, whether it is the user's).
 */
import { parentPort } from 'node:worker_threads';
import { isUserFacing } from '../errors.ts';
import { runTask, type Task } from './tasks.ts';

parentPort!.on('message', (m: { id: number; task: Task }) => {
  runTask(m.task).then(
    (result) => parentPort!.postMessage({ id: m.id, ok: true, result }),
    (e: unknown) => {
      const err = e instanceof Error ? e : new Error(String(e));
      const userFacing = isUserFacing(err);
      parentPort!.postMessage({ id: m.id, ok: false, error: { name: err.name, message: err.message, userFacing } });
    },
  );
});

