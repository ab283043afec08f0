# multiprocessing under the shim: fork-started workers, a Pool whose
# handler threads poll in a loop until another thread drains a pipe, a
# Queue, and a ProcessPoolExecutor; every answer checked.
import concurrent.futures as cf
import multiprocessing as mp
import sys


def sq(x):
    return x * x


def main():
    with mp.Pool(2) as p:
        got = sum(p.map(sq, range(200)))
    want = sum(x * x for x in range(200))
    assert got == want, (got, want)
    with cf.ProcessPoolExecutor(2) as ex:
        assert sum(ex.map(sq, range(50))) == sum(x * x for x in range(50))
    q = mp.Queue()
    pr = mp.Process(target=q.put, args=(42,))
    pr.start()
    assert q.get(timeout=30) == 42
    pr.join()
    assert pr.exitcode == 0
    print("mp: Pool.map of 200, a ProcessPoolExecutor and a Process with a Queue: all answers right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
