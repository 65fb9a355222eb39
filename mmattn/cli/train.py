import hydra
@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="train")
def main(cfg):
    print(cfg)
