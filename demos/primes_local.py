"""Which numbers are prime, checked in parallel by a concurrent.futures executor.

primes_local.py is a program written for ProcessPoolExecutor; primes_remote.py is the same file
with one line changed (the executor), and runs on pirate_actors workers serving FunctionActor
(demos/executor.sh starts two and runs it)."""

import concurrent.futures
import math
import sys

NUMBERS = [112272535095293, 112582705942171, 112272535095295, 115280095190773,
           115797848077099, 1099726899285419, 97, 1_000_003, 1_000_004]


def is_prime(n):
    if n < 2 or n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def main():
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as executor:
        for number, prime in zip(NUMBERS, executor.map(is_prime, NUMBERS)):
            print(f"{number} is prime: {prime}")
        future = executor.submit(sum, NUMBERS)
        print("sum:", future.result())


if __name__ == "__main__":
    sys.exit(main())
