{
  # vllm-fleet's Nix way: vLLM from a pinned nixpkgs, wrapped to take the same arguments as
  # the Docker image, plus its health check, an OCI image, a dev shell and a NixOS module.
  # The deploy builds packages.<system>.vllm-server-<accelerator> (nvidia, amd or cpu).
  description = "vLLM served by Nix (vllm-fleet)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      accelerators = [
        "nvidia"
        "amd"
        "cpu"
      ];
      forSystems = f: nixpkgs.lib.genAttrs systems f;
      # One nixpkgs per accelerator: cudaSupport and rocmSupport change every GPU package.
      vllmFor =
        system: accelerator:
        import ./vllm.nix {
          inherit accelerator;
          pkgs = import nixpkgs {
            inherit system;
            config = {
              # CUDA's licence is unfree; nothing else is let in.
              allowUnfreePredicate = pkg: accelerator == "nvidia";
              cudaSupport = accelerator == "nvidia";
              rocmSupport = accelerator == "amd";
            };
          };
        };
      perAccelerator =
        system: prefix: pick:
        builtins.listToAttrs (
          map (accelerator: {
            name = "${prefix}-${accelerator}";
            value = pick (vllmFor system accelerator);
          }) accelerators
        );
    in
    {
      packages = forSystems (
        system:
        perAccelerator system "vllm-server" (v: v.server)
        // perAccelerator system "vllm-image" (v: v.image)
        // {
          vllm-server = (vllmFor system "nvidia").server;
          vllm-health = (vllmFor system "cpu").health;
          default = self.packages.${system}.vllm-server;
        }
      );

      devShells = forSystems (system: {
        default = (vllmFor system "nvidia").shell;
        cpu = (vllmFor system "cpu").shell;
      });

      nixosModules.vllm = import ./module.nix { inherit self; };
      nixosModules.default = self.nixosModules.vllm;
    };
}
