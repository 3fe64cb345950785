from . import ridge as ridge
