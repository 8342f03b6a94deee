"Image folders the tests write, as a user's data looks on disk: one sub-folder of PNGs per class, from a built-in domain."
import numpy as np, torch
from PIL import Image
from transfer_nb.domains import load_domain


def write_folder(root, # the folder to create
                 spec='mnist:1,7', # a built-in domain (with a class selection): its classes become the sub-folders
                 n=30, # images per class
                 rgb=True): # save as RGB (else grey)
    d = load_domain(spec)
    for c, name in enumerate(d.classes):
        (root/name).mkdir(parents=True)
        for i in torch.where(d.y == c)[0][:n].tolist():
            im = Image.fromarray((d.x[i, 0].numpy() * 255).astype(np.uint8))
            (im.convert('RGB') if rgb else im).save(root/name/f'{i}.png')
    return root


def loader_images(dl):
    "The images a loader of transfer_nb serves, decoded: N×C×H×W in the dataset's order (files of a folder are read from disk)."
    ds = dl.dataset
    return ds.files.load() if hasattr(ds, 'files') else ds.ts[0]


def decoded(x):
    "Images as a tensor: `ImageFiles` decoded, tensors as they are."
    return x if torch.is_tensor(x) else x.load()
