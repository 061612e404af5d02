{
  # STAND-IN for nix/flake.nix, for tests only: it packages the stand-in server (server.py
  # beside this file, not vLLM) under the attribute names the deploy builds, with no
  # nixpkgs (nothing can be fetched on the test machines). It runs the host's python3 and
  # is built with /bin/sh, which works on Debian's Nix (sandbox = false there).
  description = "vllm-fleet STAND-IN server flake (tests only, not vLLM)";

  outputs =
    { self }:
    let
      server =
        system: accelerator:
        derivation {
          name = "vllm-server-standin-${accelerator}";
          inherit system;
          builder = "/bin/sh";
          args = [
            "-c"
            ''
              /bin/mkdir -p $out/bin $out/share
              /bin/cp ${./server.py} $out/share/server.py
              printf '#!/bin/sh\n# vllm-fleet STAND-IN (not vLLM)\nexec /usr/bin/python3 %s/share/server.py "$@"\n' $out > $out/bin/vllm-server
              /bin/chmod 755 $out/bin/vllm-server
            ''
          ];
        };
      packagesFor = system: {
        vllm-server-nvidia = server system "nvidia";
        vllm-server-amd = server system "amd";
        vllm-server-cpu = server system "cpu";
      };
    in
    {
      packages.x86_64-linux = packagesFor "x86_64-linux";
      packages.aarch64-linux = packagesFor "aarch64-linux";
    };
}
