"""Run every benchmark and print its figures (``python -m bench``)."""

from bench import experiment_bench, faults_bench, hop_bench, sandbox_bench, scale_bench, traffic_bench

if __name__ == "__main__":
    sandbox_bench.main()
    print()
    faults_bench.main()
    print()
    experiment_bench.main()
    print()
    traffic_bench.main()
    print()
    hop_bench.main()
    print()
    scale_bench.main()
